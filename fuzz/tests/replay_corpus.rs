//! Replays every stored fuzz input (`fuzz/corpus/*/`, `fuzz/regressions/*/`) through the
//! targets' own code on stable, and checks the seed corpus is current and meaningful.

use std::collections::BTreeSet;

use berth_core::ContainerState;
use berth_fuzz::ops::{
    self, Delay, Grace, Kind, Name, Op, PodName, PodSlot, ReadProblem, Slot, Verb, Who,
};
use berth_fuzz::{Outcome, TARGETS, replay, seeds};

/// Fewer stored inputs than this means the corpus went missing (the test would pass
/// vacuously otherwise).
const MIN_CHECKPOINT_INPUTS: usize = 12;
const MIN_OPS_INPUTS: usize = 6;

#[test]
fn every_stored_input_replays_without_finding() {
    let mut replayed = 0;
    let mut checkpoint = (0, 0, 0, 0); // (accepted, rejected, container meta, sandbox meta)
    let mut states = BTreeSet::new();
    let (mut ops_inputs, mut recoveries, mut error_replies) = (0, 0, 0);
    for target in TARGETS {
        for file in replay::stored_inputs(target) {
            match replay::replay_file(target, &file) {
                Ok(Outcome::Decode(a)) => {
                    if a.checkpoint {
                        checkpoint.0 += 1;
                    } else {
                        checkpoint.1 += 1;
                    }
                    checkpoint.2 += usize::from(a.container_meta);
                    checkpoint.3 += usize::from(a.sandbox_meta);
                }
                Ok(Outcome::Ops(r)) => {
                    ops_inputs += 1;
                    states.extend(r.states);
                    recoveries += r.recoveries;
                    error_replies += r.error_replies;
                }
                Err(finding) => panic!("{}: {finding}", file.display()),
            }
            replayed += 1;
        }
    }
    let decode_inputs = checkpoint.0 + checkpoint.1;
    assert!(
        decode_inputs >= MIN_CHECKPOINT_INPUTS,
        "only {decode_inputs} checkpoint_decode inputs"
    );
    assert!(ops_inputs >= MIN_OPS_INPUTS, "only {ops_inputs} ops inputs");
    assert_eq!(replayed, decode_inputs + ops_inputs);
    // The corpus reaches both sides of every decoder and every container state.
    assert!(checkpoint.0 > 0 && checkpoint.1 > 0, "{checkpoint:?}");
    assert!(checkpoint.2 > 0 && checkpoint.3 > 0, "{checkpoint:?}");
    let all = [
        ContainerState::Created,
        ContainerState::Running,
        ContainerState::Exited,
        ContainerState::Unknown,
    ];
    assert_eq!(states, BTreeSet::from(all));
    assert!(recoveries > 0 && error_replies > 0);
}

#[test]
fn committed_seeds_are_current() {
    for seed in seeds::seeds() {
        let path = replay::fuzz_dir()
            .join("corpus")
            .join(seed.target)
            .join(format!("seed-{}", seed.name));
        let stored = std::fs::read(&path).unwrap_or_default();
        assert!(
            stored == seed.bytes,
            "{} is stale: run `cargo run --manifest-path fuzz/Cargo.toml --example write_seeds`",
            path.display()
        );
    }
}

#[test]
fn ops_seeds_decode_to_their_scenarios() {
    for (name, scenario) in seeds::ops_scenarios() {
        assert_eq!(
            ops::decode(&seeds::encode_ops(&scenario)),
            scenario,
            "{name}"
        );
    }
}

#[test]
fn every_op_variant_round_trips() {
    // The last variant of every field enum, so a miscounted enum shows up.
    let last = Who::Sandbox(PodSlot::P1);
    let every = vec![
        Op::RunPod {
            pod: PodSlot::P1,
            name: PodName::Api,
        },
        Op::Create {
            id: Slot::C3,
            pod: PodSlot::P1,
            name: Name::Empty,
        },
        Op::Start(Slot::C3),
        Op::Stop {
            id: Slot::C3,
            grace: Grace::S30,
        },
        Op::Remove(Slot::C2),
        Op::StopPod(PodSlot::P1),
        Op::RemovePod(PodSlot::P1),
        Op::Execute(255),
        Op::Drain(7),
        Op::Fault {
            verb: Verb::LogsReopen,
            kind: Kind::Other,
        },
        Op::LoseReply(Verb::TasksWait),
        Op::FailPersists(3),
        Op::TaskExit {
            who: last,
            code: 137,
        },
        Op::ExitEvent(last),
        Op::IgnoreTerm(Who::Container(Slot::C1)),
        Op::KillShim(last),
        Op::RestartContainerd,
        Op::Advance(Delay::NextTimer),
        Op::CrashRecover {
            observe: [None, Some((last, Kind::DeadlineExceeded))],
            checkpoint: Some((Slot::C3, ReadProblem::Unreadable)),
        },
        Op::Update {
            id: Slot::C3,
            mib: 255,
        },
        Op::ReopenLog(Slot::C3),
    ];
    assert_eq!(ops::decode(&seeds::encode_ops(&every)), every);
    let run = ops::run_ops(&every, false).expect("invariants hold");
    assert_eq!(run.ops, every.len());
}

#[test]
fn inputs_are_bounded() {
    let long = vec![0x55; 100_000];
    assert_eq!(ops::decode(&long).len(), ops::MAX_OPS);
    assert!(ops::decode(&[]).is_empty());
    assert!(matches!(
        berth_fuzz::run("no_such_target", b"", false),
        Err(berth_fuzz::Finding::UnknownTarget(_))
    ));
}
