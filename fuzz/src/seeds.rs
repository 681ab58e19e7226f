//! The seed corpus, generated from readable scenarios: `cargo run --example write_seeds`
//! writes it to `fuzz/corpus/`, and the replay test checks the committed files are current.
//!
//! An `ops` seed is a list of [`Op`]s turned into the bytes that `arbitrary` decodes back into
//! the same list ([`encode_ops`]; a test checks the round trip, so a change of `Op` or of
//! `arbitrary`'s format is caught rather than silently turning the seeds into noise).

use berth_core::testing::{self, WALL_BASE};
use berth_core::{
    ContainerId, ContainerMeta, START_ERROR_EXIT_CODE, START_ERROR_REASON, SandboxId, SandboxMeta,
    Status, encode_checkpoint,
};

use crate::ops::{Delay, Grace, Kind, Name, Op, PodName, PodSlot, ReadProblem, Slot, Verb, Who};

/// One seed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// The fuzz target (directory under `fuzz/corpus/`).
    pub target: &'static str,
    /// The file name.
    pub name: &'static str,
    /// The content.
    pub bytes: Vec<u8>,
}

/// Writes values in the layout `arbitrary` (1.x) reads them: integers little-endian, an
/// enum as a `u32` mapped to its variant by `(x * count) >> 32`, then its fields in order.
trait Encode {
    fn encode(&self, out: &mut Vec<u8>);
}

fn variant(out: &mut Vec<u8>, index: u32, count: u32) {
    // The smallest x with (x * count) >> 32 == index.
    let x = (u64::from(index) << 32).div_ceil(u64::from(count));
    let x = u32::try_from(x).expect("index < count");
    out.extend_from_slice(&x.to_le_bytes());
}

macro_rules! unit_enum {
    ($($ty:ty = $count:expr),* $(,)?) => {$(
        impl Encode for $ty {
            fn encode(&self, out: &mut Vec<u8>) {
                variant(out, *self as u32, $count);
            }
        }
    )*};
}

unit_enum!(
    Slot = 4,
    PodSlot = 2,
    PodName = 2,
    Name = 3,
    Verb = 11,
    Kind = 6,
    Grace = 4,
    Delay = 6,
    ReadProblem = 2,
);

impl Encode for u8 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.encode(out);
            }
        }
    }
}

impl<A: Encode, B: Encode> Encode for (A, B) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
    }
}

impl<T: Encode, const N: usize> Encode for [T; N] {
    fn encode(&self, out: &mut Vec<u8>) {
        for v in self {
            v.encode(out);
        }
    }
}

impl Encode for Who {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Who::Container(s) => {
                variant(out, 0, 2);
                s.encode(out);
            }
            Who::Sandbox(p) => {
                variant(out, 1, 2);
                p.encode(out);
            }
        }
    }
}

const OP_VARIANTS: u32 = 21;

impl Encode for Op {
    fn encode(&self, out: &mut Vec<u8>) {
        let tag = |out: &mut Vec<u8>, i| variant(out, i, OP_VARIANTS);
        match self {
            Op::RunPod { pod, name } => {
                tag(out, 0);
                pod.encode(out);
                name.encode(out);
            }
            Op::Create { id, pod, name } => {
                tag(out, 1);
                id.encode(out);
                pod.encode(out);
                name.encode(out);
            }
            Op::Start(id) => {
                tag(out, 2);
                id.encode(out);
            }
            Op::Stop { id, grace } => {
                tag(out, 3);
                id.encode(out);
                grace.encode(out);
            }
            Op::Remove(id) => {
                tag(out, 4);
                id.encode(out);
            }
            Op::StopPod(p) => {
                tag(out, 5);
                p.encode(out);
            }
            Op::RemovePod(p) => {
                tag(out, 6);
                p.encode(out);
            }
            Op::Execute(i) => {
                tag(out, 7);
                i.encode(out);
            }
            Op::Drain(n) => {
                tag(out, 8);
                n.encode(out);
            }
            Op::Fault { verb, kind } => {
                tag(out, 9);
                verb.encode(out);
                kind.encode(out);
            }
            Op::LoseReply(verb) => {
                tag(out, 10);
                verb.encode(out);
            }
            Op::FailPersists(n) => {
                tag(out, 11);
                n.encode(out);
            }
            Op::TaskExit { who, code } => {
                tag(out, 12);
                who.encode(out);
                code.encode(out);
            }
            Op::ExitEvent(who) => {
                tag(out, 13);
                who.encode(out);
            }
            Op::IgnoreTerm(who) => {
                tag(out, 14);
                who.encode(out);
            }
            Op::KillShim(who) => {
                tag(out, 15);
                who.encode(out);
            }
            Op::RestartContainerd => tag(out, 16),
            Op::Advance(d) => {
                tag(out, 17);
                d.encode(out);
            }
            Op::CrashRecover {
                observe,
                checkpoint,
            } => {
                tag(out, 18);
                observe.encode(out);
                checkpoint.encode(out);
            }
            Op::Update { id, mib } => {
                tag(out, 19);
                id.encode(out);
                mib.encode(out);
            }
            Op::ReopenLog(id) => {
                tag(out, 20);
                id.encode(out);
            }
        }
    }
}

/// The bytes that [`crate::ops::decode`] turns into `ops`.
pub fn encode_ops(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// Drain everything pending (up to [`crate::ops::MAX_DRAIN`] effects).
const DRAIN: Op = Op::Drain(u8::MAX);
const C0: Slot = Slot::C0;
const P0: PodSlot = PodSlot::P0;

fn pod_with_running_container() -> Vec<Op> {
    vec![
        Op::RunPod {
            pod: P0,
            name: PodName::Web,
        },
        DRAIN,
        Op::Create {
            id: C0,
            pod: P0,
            name: Name::App,
        },
        DRAIN,
        Op::Start(C0),
        DRAIN,
    ]
}

fn with(mut base: Vec<Op>, more: &[Op]) -> Vec<Op> {
    base.extend_from_slice(more);
    base
}

/// The `ops` seeds as named operation lists.
pub fn ops_scenarios() -> Vec<(&'static str, Vec<Op>)> {
    let ct = Who::Container(C0);
    vec![
        (
            "lifecycle",
            with(
                pod_with_running_container(),
                &[
                    Op::TaskExit { who: ct, code: 0 },
                    DRAIN,
                    Op::ExitEvent(ct),
                    Op::Remove(C0),
                    DRAIN,
                    Op::StopPod(P0),
                    DRAIN,
                    Op::RemovePod(P0),
                    DRAIN,
                ],
            ),
        ),
        (
            "stop_escalates_to_kill",
            with(
                pod_with_running_container(),
                &[
                    Op::IgnoreTerm(ct),
                    Op::Stop {
                        id: C0,
                        grace: Grace::S10,
                    },
                    DRAIN,
                    Op::Advance(Delay::S10),
                    DRAIN,
                    Op::Remove(C0),
                    DRAIN,
                ],
            ),
        ),
        (
            "stop_races_start",
            vec![
                Op::RunPod {
                    pod: P0,
                    name: PodName::Web,
                },
                DRAIN,
                Op::Create {
                    id: C0,
                    pod: P0,
                    name: Name::App,
                },
                DRAIN,
                Op::Start(C0),
                Op::Execute(0),
                Op::Stop {
                    id: C0,
                    grace: Grace::Zero,
                },
                Op::Execute(1),
                Op::Execute(0),
                DRAIN,
                Op::Advance(Delay::NextTimer),
                DRAIN,
            ],
        ),
        (
            "start_fails",
            vec![
                Op::RunPod {
                    pod: P0,
                    name: PodName::Web,
                },
                DRAIN,
                Op::Create {
                    id: C0,
                    pod: P0,
                    name: Name::App,
                },
                Op::Create {
                    id: Slot::C1,
                    pod: P0,
                    name: Name::Sidecar,
                },
                Op::Create {
                    id: Slot::C2,
                    pod: P0,
                    name: Name::App,
                },
                DRAIN,
                Op::Fault {
                    verb: Verb::TasksStart,
                    kind: Kind::Other,
                },
                Op::Start(C0),
                DRAIN,
                Op::LoseReply(Verb::TasksCreate),
                Op::Start(Slot::C1),
                DRAIN,
                Op::Advance(Delay::S1),
                DRAIN,
            ],
        ),
        (
            "exit_persist_fails",
            with(
                pod_with_running_container(),
                &[
                    Op::FailPersists(2),
                    Op::TaskExit { who: ct, code: 3 },
                    DRAIN,
                    Op::Advance(Delay::S1),
                    DRAIN,
                    Op::Advance(Delay::NextTimer),
                    DRAIN,
                    Op::Remove(C0),
                    DRAIN,
                ],
            ),
        ),
        (
            "crash_recover",
            with(
                pod_with_running_container(),
                &[
                    Op::CrashRecover {
                        observe: [Some((ct, Kind::DeadlineExceeded)), None],
                        checkpoint: None,
                    },
                    DRAIN,
                    Op::TaskExit { who: ct, code: 1 },
                    Op::Advance(Delay::S1),
                    DRAIN,
                    Op::CrashRecover {
                        observe: [None, None],
                        checkpoint: Some((C0, ReadProblem::Unreadable)),
                    },
                    DRAIN,
                ],
            ),
        ),
        (
            "containerd_restart_and_shim_death",
            with(
                pod_with_running_container(),
                &[
                    Op::RestartContainerd,
                    Op::Advance(Delay::NextTimer),
                    DRAIN,
                    Op::KillShim(ct),
                    DRAIN,
                    Op::Advance(Delay::NextTimer),
                    DRAIN,
                    Op::KillShim(Who::Sandbox(P0)),
                    DRAIN,
                    Op::RemovePod(P0),
                    DRAIN,
                ],
            ),
        ),
        (
            "update_and_reopen",
            vec![
                Op::RunPod {
                    pod: P0,
                    name: PodName::Web,
                },
                DRAIN,
                Op::Create {
                    id: C0,
                    pod: P0,
                    name: Name::App,
                },
                DRAIN,
                // CREATED: the record's spec; then refused, no log yet.
                Op::Update { id: C0, mib: 64 },
                DRAIN,
                Op::ReopenLog(C0),
                Op::Start(C0),
                DRAIN,
                // RUNNING: the task; one call fails, one reply is lost.
                Op::Fault {
                    verb: Verb::TasksUpdate,
                    kind: Kind::Unavailable,
                },
                Op::Update { id: C0, mib: 32 },
                DRAIN,
                Op::LoseReply(Verb::TasksUpdate),
                Op::Update { id: C0, mib: 32 },
                DRAIN,
                Op::ReopenLog(C0),
                DRAIN,
                // The process exits while Tasks.Update is in flight.
                Op::Update { id: C0, mib: 16 },
                Op::TaskExit { who: ct, code: 3 },
                DRAIN,
                Op::ReopenLog(C0),
                Op::Update { id: C0, mib: 8 },
                Op::Remove(C0),
                DRAIN,
            ],
        ),
    ]
}

fn checkpoint_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let created = Status::created(WALL_BASE, None);
    let mut running = created.clone();
    running.pid = 4242;
    running.started_at = WALL_BASE + 1_000_000;
    let mut failed = created.clone();
    failed.finished_at = WALL_BASE + 2_000_000;
    failed.exit_code = START_ERROR_EXIT_CODE;
    failed.reason = START_ERROR_REASON.into();
    failed.message = "failed to create shim task: OCI runtime create failed".into();
    let running_bytes = encode_checkpoint(&running);
    let container = ContainerMeta {
        id: ContainerId::new("c0").expect("valid id"),
        sandbox_id: SandboxId::new("p0").expect("valid id"),
        name: "app_web_default_uid-web_0".into(),
        config: testing::container_config("app"),
        log_path: "/var/log/pods/web/app.log".into(),
        stop_signal: 15,
        image: Default::default(),
    };
    let sandbox = SandboxMeta {
        id: SandboxId::new("p0").expect("valid id"),
        name: "web_default_uid-web_0".into(),
        config: testing::sandbox_config("web"),
        created_at: WALL_BASE,
    };
    let container_bytes = container.encode();
    vec![
        // Written by containerd 1.6.20 (docs/containerd-behaviour.md §2).
        ("containerd_v1", br#"{"Version":"v1","Pid":27130,"CreatedAt":1795407741827751552,"StartedAt":1795407742192091964,"FinishedAt":0,"ExitCode":0,"Reason":"","Message":"","Resources":{"linux":{}}}"#.to_vec()),
        ("created", encode_checkpoint(&created)),
        ("running", running_bytes.clone()),
        ("start_failed", encode_checkpoint(&failed)),
        ("unknown", encode_checkpoint(&Status::unknown(WALL_BASE))),
        ("torn", running_bytes[..running_bytes.len() / 2].to_vec()),
        ("future_fields", br#"{"Version":"v1","CreatedAt":5,"FutureField":{"a":[1,2]},"Unknown":true}"#.to_vec()),
        ("version_v2", br#"{"Version":"v2","Pid":1}"#.to_vec()),
        ("no_version", br#"{"Pid":1}"#.to_vec()),
        ("negative_pid", br#"{"Version":"v1","Pid":-1}"#.to_vec()),
        ("not_an_object", b"[1,2]".to_vec()),
        ("empty", Vec::new()),
        ("container_meta", container_bytes.clone()),
        ("container_meta_torn", container_bytes[..container_bytes.len() - 7].to_vec()),
        ("sandbox_meta", sandbox.encode()),
        ("meta_bad_id", br#"{"Version":"v1","Metadata":{"id":"a/b"}}"#.to_vec()),
    ]
}

/// Every seed of every target, in a fixed order.
pub fn seeds() -> Vec<Seed> {
    let mut out: Vec<Seed> = checkpoint_seeds()
        .into_iter()
        .map(|(name, bytes)| Seed {
            target: "checkpoint_decode",
            name,
            bytes,
        })
        .collect();
    out.extend(ops_scenarios().into_iter().map(|(name, ops)| Seed {
        target: "ops",
        name,
        bytes: encode_ops(&ops),
    }));
    out
}
