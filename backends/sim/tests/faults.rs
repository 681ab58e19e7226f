//! Every fault kind of the fault plan, and determinism of the decisions.

mod common;

use std::time::Duration;

use berth_backend::{Backend, BackendErrorKind, TaskState};
use berth_simbackend::examples::container_meta;
use berth_simbackend::{
    CallFaults, Chaos, ChaosRates, FaultKind, FaultPlan, ProcessPlan, SimBackend, SimConfig,
};
use common::{ct, pod, run, sb};

fn sim(seed: u64) -> SimBackend {
    SimBackend::with_config(seed, SimConfig::instant())
}

fn calls(f: impl FnOnce(&mut CallFaults)) -> FaultPlan {
    let mut plan = FaultPlan::none();
    f(&mut plan.calls);
    plan
}

#[tokio::test(start_paused = true)]
async fn injected_errors_have_their_kind_and_no_effect() {
    let kinds = [
        (BackendErrorKind::Unavailable, FaultKind::Unavailable),
        (BackendErrorKind::Other, FaultKind::Other),
        (
            BackendErrorKind::FailedPrecondition,
            FaultKind::FailedPrecondition,
        ),
    ];
    for (i, (kind, fault)) in kinds.into_iter().enumerate() {
        let sim = sim(i as u64);
        pod(&sim, "p1").await;
        sim.set_faults(calls(|c| match fault {
            FaultKind::Unavailable => c.unavailable = 1.0,
            FaultKind::Other => c.other = 1.0,
            _ => c.failed_precondition = 1.0,
        }));
        let e = sim
            .create_container(&container_meta("p1", "c1"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, kind, "{e}");
        assert!(
            !sim.truth().records.contains_key("c1"),
            "{fault}: no effect"
        );
        assert_eq!(sim.fault_counts().get(fault), 1);
        assert_eq!(sim.fault_log()[0].kind, fault);
        assert_eq!(sim.fault_log()[0].what, "Containers.Create");
    }
}

#[tokio::test(start_paused = true)]
async fn deadline_exceeded_leaves_the_outcome_unknown() {
    let sim = sim(11);
    pod(&sim, "p1").await;
    sim.set_faults(calls(|c| c.deadline_exceeded = 1.0));
    let mut applied = 0;
    for i in 0..40 {
        let id = format!("c{i}");
        let e = sim
            .create_container(&container_meta("p1", &id))
            .await
            .unwrap_err();
        assert_eq!(e.kind, BackendErrorKind::DeadlineExceeded);
        if sim.truth().records.contains_key(&id) {
            applied += 1;
        }
    }
    assert!(
        applied > 0 && applied < 40,
        "some applied, some not: {applied}"
    );
    assert_eq!(sim.fault_counts().get(FaultKind::DeadlineExceeded), 40);
}

#[tokio::test(start_paused = true)]
async fn a_lost_reply_hides_an_effect_that_happened() {
    let sim = sim(2);
    pod(&sim, "p1").await;
    sim.set_faults(calls(|c| c.reply_lost = 1.0));
    let e = sim
        .create_container(&container_meta("p1", "c1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::Unavailable, "{e}");
    assert!(
        sim.truth().records.contains_key("c1"),
        "the effect happened"
    );
    sim.set_faults(FaultPlan::none());
    let e = sim
        .create_container(&container_meta("p1", "c1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::AlreadyExists);
    assert_eq!(sim.fault_counts().get(FaultKind::ReplyLost), 1);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_take_up_to_the_maximum_delay_and_succeed() {
    let sim = sim(3);
    pod(&sim, "p1").await;
    sim.set_faults(calls(|c| {
        c.slow = 1.0;
        c.max_delay = Duration::from_secs(2);
    }));
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let before = tokio::time::Instant::now();
        assert!(matches!(
            sim.task_status(&sb("p1")).await.unwrap(),
            TaskState::Running { .. }
        ));
        let took = before.elapsed();
        assert!(took <= Duration::from_secs(2), "{took:?}");
        slowest = slowest.max(took);
    }
    assert!(slowest > Duration::ZERO);
    assert_eq!(sim.fault_counts().get(FaultKind::Slow), 20);
}

#[tokio::test(start_paused = true)]
async fn a_hang_is_cut_only_by_a_deadline() {
    let sim = sim(4);
    pod(&sim, "p1").await;
    sim.set_faults(calls(|c| c.hang = 1.0));
    for i in 0..10 {
        let id = format!("c{i}");
        let meta = container_meta("p1", &id);
        let r = tokio::time::timeout(Duration::from_secs(60), sim.create_container(&meta)).await;
        assert!(r.is_err(), "the call never answers");
    }
    let created = sim.truth().records.len() - 1;
    assert!(
        created > 0 && created < 10,
        "hangs before and after the effect: {created}"
    );
    assert_eq!(sim.fault_counts().get(FaultKind::Hang), 10);
    // With a call timeout configured, the backend cuts hangs itself, like berth's real
    // backend.
    let cut = SimBackend::with_config(
        4,
        SimConfig {
            call_timeout: Some(Duration::from_secs(5)),
            ..SimConfig::instant()
        },
    );
    pod(&cut, "p1").await;
    cut.set_faults(calls(|c| c.hang = 1.0));
    let e = cut.task_status(&sb("p1")).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::DeadlineExceeded, "{e}");
}

#[tokio::test(start_paused = true)]
async fn waits_hang_only_when_asked_and_then_until_a_restart() {
    let sim = sim(5);
    pod(&sim, "p1").await;
    run(
        &sim,
        "p1",
        "c1",
        ProcessPlan::exit(Duration::from_secs(1), 5),
    )
    .await;
    sim.set_faults(calls(|c| c.hang = 1.0));
    // Without `hang_waits` a wait is not hung.
    assert_eq!(sim.wait_task(&ct("c1")).await.unwrap().code, 5);
    sim.set_faults(FaultPlan::none());
    run(
        &sim,
        "p1",
        "c2",
        ProcessPlan::exit(Duration::from_secs(1), 6),
    )
    .await;
    sim.set_faults(calls(|c| {
        c.hang = 1.0;
        c.hang_waits = true;
    }));
    let restarter = async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        sim.restart_containerd(Duration::ZERO);
    };
    let t = ct("c2");
    let (waited, ()) = tokio::join!(sim.wait_task(&t), restarter);
    assert_eq!(waited.unwrap_err().kind, BackendErrorKind::Unavailable);
    sim.set_faults(FaultPlan::none());
    assert_eq!(sim.wait_task(&t).await.unwrap().code, 6);
}

#[tokio::test(start_paused = true)]
async fn a_broken_wait_is_unavailable_while_the_task_runs_on() {
    let sim = sim(6);
    pod(&sim, "p1").await;
    let pid = run(&sim, "p1", "c1", ProcessPlan::forever()).await;
    sim.set_faults(calls(|c| {
        c.wait_broken = 1.0;
        c.max_delay = Duration::from_secs(3);
    }));
    let e = sim.wait_task(&ct("c1")).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::Unavailable, "{e}");
    assert_eq!(
        sim.task_status(&ct("c1")).await.unwrap(),
        TaskState::Running { pid }
    );
    assert_eq!(sim.fault_counts().get(FaultKind::WaitBroken), 1);
    // A wait that breaks after the task exits returns the exit instead.
    sim.exit_now(&ct("c1"), 3).unwrap();
    assert_eq!(sim.wait_task(&ct("c1")).await.unwrap().code, 3);
}

#[tokio::test(start_paused = true)]
async fn injected_errors_never_lie_about_existence() {
    let sim = sim(7);
    pod(&sim, "p1").await;
    run(&sim, "p1", "c1", ProcessPlan::forever()).await;
    sim.set_faults(calls(|c| {
        c.unavailable = 0.1;
        c.deadline_exceeded = 0.1;
        c.other = 0.1;
        c.failed_precondition = 0.1;
        c.reply_lost = 0.1;
    }));
    let mut errors = 0;
    for _ in 0..300 {
        for r in [
            sim.task_status(&ct("c1")).await.map(|_| ()),
            sim.kill_task(&ct("c1"), 0).await,
            sim.list().await.map(|_| ()),
        ] {
            if let Err(e) = r {
                errors += 1;
                assert!(
                    !matches!(
                        e.kind,
                        BackendErrorKind::NotFound | BackendErrorKind::AlreadyExists
                    ),
                    "{e}"
                );
            }
        }
    }
    assert!(errors > 300, "about half the calls fail: {errors}");
}

/// Runs a fixed script of calls with faults and returns what happened.
async fn script(seed: u64) -> (Vec<String>, Vec<berth_simbackend::FaultEvent>) {
    let sim = sim(seed);
    pod(&sim, "p1").await;
    let mut plan = FaultPlan::from_seed(seed);
    plan.calls = calls(|c| {
        c.unavailable = 0.05;
        c.deadline_exceeded = 0.05;
        c.other = 0.05;
        c.reply_lost = 0.05;
        c.slow = 0.05;
        c.wait_broken = 0.2;
    })
    .calls;
    sim.set_faults(plan);
    let mut outcomes = Vec::new();
    for i in 0..30 {
        let id = format!("c{i}");
        let t = ct(&id);
        sim.plan(
            &t,
            ProcessPlan::exit(Duration::from_millis(10 * i), i as i32),
        );
        outcomes.push(format!(
            "{:?}",
            sim.create_container(&container_meta("p1", &id)).await
        ));
        outcomes.push(format!("{:?}", sim.create_task(&t).await));
        outcomes.push(format!("{:?}", sim.start_task(&t).await));
        // A task whose start failed stays Created and its wait blocks: bound it.
        let waited = tokio::time::timeout(Duration::from_secs(10), sim.wait_task(&t)).await;
        outcomes.push(format!("{waited:?}"));
        outcomes.push(format!("{:?}", sim.maybe_chaos()));
    }
    outcomes.push(format!("{:?}", sim.truth()));
    (outcomes, sim.fault_log())
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_makes_the_same_decisions() {
    let (a, log_a) = script(42).await;
    let (b, log_b) = script(42).await;
    assert_eq!(a, b);
    assert_eq!(log_a, log_b);
    assert!(!log_a.is_empty());
    let (c, log_c) = script(43).await;
    assert_ne!(log_a, log_c, "another seed, other decisions");
    assert_ne!(a, c);
}

#[test]
fn plans_from_seeds_are_swarm_and_deterministic() {
    assert_eq!(FaultPlan::from_seed(9), FaultPlan::from_seed(9));
    let plans: Vec<FaultPlan> = (0..64).map(FaultPlan::from_seed).collect();
    let on = |f: fn(&FaultPlan) -> f64| plans.iter().filter(|p| f(p) > 0.0).count();
    type Rate = fn(&FaultPlan) -> f64;
    let kinds: [(&str, Rate); 11] = [
        ("unavailable", |p| p.calls.unavailable),
        ("deadline", |p| p.calls.deadline_exceeded),
        ("other", |p| p.calls.other),
        ("reply_lost", |p| p.calls.reply_lost),
        ("hang", |p| p.calls.hang),
        ("sync_failure", |p| p.disk.sync_failure),
        ("no_space", |p| p.disk.no_space),
        ("torn", |p| p.disk.torn_write),
        ("lost_rename", |p| p.disk.lost_rename),
        ("restart", |p| p.chaos.containerd_restart),
        ("shim_death", |p| p.chaos.shim_death),
    ];
    for (name, f) in kinds {
        let n = on(f);
        assert!(n > 8 && n < 56, "{name} is on in {n} of 64 plans");
    }
    assert_eq!(FaultPlan::none(), FaultPlan::default());
    assert!(FaultPlan::none().calls.is_none());
}

#[tokio::test(start_paused = true)]
async fn the_none_plan_heals() {
    let sim = sim(8);
    pod(&sim, "p1").await;
    sim.set_faults(calls(|c| c.unavailable = 1.0));
    assert!(sim.list().await.is_err());
    sim.set_faults(FaultPlan::none());
    for _ in 0..50 {
        sim.list().await.unwrap();
    }
    assert_eq!(sim.fault_counts().total(), 1);
}

#[tokio::test(start_paused = true)]
async fn chaos_draws_restarts_shim_deaths_and_exits() {
    let sim = sim(9);
    pod(&sim, "p1").await;
    run(&sim, "p1", "c1", ProcessPlan::forever()).await;
    let chaos = |restart, shim, exit| FaultPlan {
        chaos: ChaosRates {
            containerd_restart: restart,
            shim_death: shim,
            exit_now: exit,
            exit_race: 0.0,
            max_down: Duration::from_secs(1),
        },
        ..FaultPlan::none()
    };
    sim.set_faults(chaos(0.0, 0.0, 1.0));
    let Some(Chaos::Exit(exit)) = sim.maybe_chaos() else {
        panic!("an exit was due");
    };
    assert_eq!(exit.target, ct("c1"));
    assert_eq!(sim.truth().last_exit("c1"), Some(&exit));
    sim.set_faults(chaos(1.0, 0.0, 0.0));
    assert!(matches!(
        sim.maybe_chaos(),
        Some(Chaos::ContainerdRestart(_))
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    sim.set_faults(chaos(0.0, 1.0, 0.0));
    let Some(Chaos::ShimDeath(death)) = sim.maybe_chaos() else {
        panic!("a shim death was due");
    };
    assert_eq!(death.pod.as_str(), "p1");
    assert_eq!(sim.maybe_chaos(), None, "no live shim left");
    let counts = sim.fault_counts();
    for kind in [
        FaultKind::ExitNow,
        FaultKind::ContainerdRestart,
        FaultKind::ShimDeath,
    ] {
        assert_eq!(counts.get(kind), 1, "{kind}");
    }
    assert_eq!(counts.total(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_late_exit_arrives_after_the_process_ended_with_its_real_time() {
    let sim = sim(8);
    pod(&sim, "p1").await;
    run(&sim, "p1", "c1", ProcessPlan::forever()).await;
    sim.set_faults(calls(|c| {
        c.late_exit = 1.0;
        c.max_delay = Duration::from_secs(3);
    }));
    let start = tokio::time::Instant::now();
    let c1 = ct("c1");
    let waiter = sim.wait_task(&c1);
    let killer = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sim.exit_now(&ct("c1"), 9).unwrap();
        tokio::time::Instant::now()
    };
    let (exit, exited) = tokio::join!(waiter, killer);
    let exit = exit.unwrap();
    assert_eq!(exit.code, 9);
    let delivered = tokio::time::Instant::now();
    assert!(delivered > exited, "the exit was not held back");
    assert!(delivered - start <= Duration::from_secs(4));
    // The exit keeps the time the process ended, not the time it was delivered.
    assert_eq!(
        sim.truth().last_exit("c1").unwrap().exited_at,
        exit.exited_at
    );
    assert_eq!(sim.fault_counts().get(FaultKind::LateExit), 1);
    // Meanwhile containerd already says the task stopped.
    assert!(matches!(
        sim.task_status(&ct("c1")).await.unwrap(),
        TaskState::Stopped(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_late_exit_in_flight_is_lost_when_containerd_restarts() {
    let sim = sim(9);
    pod(&sim, "p1").await;
    run(&sim, "p1", "c1", ProcessPlan::forever()).await;
    sim.exit_now(&ct("c1"), 4).unwrap();
    sim.set_faults(calls(|c| {
        c.late_exit = 1.0;
        c.max_delay = Duration::from_secs(60);
    }));
    let restarter = async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        sim.restart_containerd(Duration::ZERO);
    };
    // A draw of up to 60 s almost surely outlasts the 1 ms before the restart (the seed
    // fixes the draw).
    let c1 = ct("c1");
    let (waited, ()) = tokio::join!(sim.wait_task(&c1), restarter);
    assert_eq!(waited.unwrap_err().kind, BackendErrorKind::Unavailable);
    sim.set_faults(FaultPlan::none());
    assert_eq!(sim.wait_task(&c1).await.unwrap().code, 4);
}

#[test]
fn late_exits_are_on_in_about_half_the_plans_with_a_rate_from_the_menu() {
    let mut on = 0;
    for seed in 0..200 {
        let late = FaultPlan::from_seed(seed).calls.late_exit;
        assert!([0.0, 0.05, 0.2, 0.5].contains(&late), "seed {seed}: {late}");
        on += usize::from(late > 0.0);
    }
    assert!(
        (60..140).contains(&on),
        "late exits on in {on} of 200 plans"
    );
}

#[tokio::test(start_paused = true)]
async fn updates_and_reopens_get_faults_like_every_call() {
    let sim = sim(5);
    pod(&sim, "p1").await;
    run(&sim, "p1", "c1", ProcessPlan::forever()).await;
    let id = berth_core::ContainerId::new("c1").unwrap();
    let limits = berth_backend::Resources {
        memory_limit_in_bytes: 64 << 20,
        ..berth_backend::Resources::default()
    };
    sim.set_faults(calls(|c| c.other = 1.0));
    let e = sim
        .update_resources(&id, berth_backend::ResourcesOf::Task, &limits)
        .await
        .unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::Other, "{e}");
    assert_eq!(
        sim.truth_of("c1").task.unwrap().resources,
        None,
        "no effect"
    );
    let e = sim.reopen_log(&id).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::Other, "{e}");
    sim.set_faults(calls(|c| c.reply_lost = 1.0));
    let e = sim
        .update_resources(&id, berth_backend::ResourcesOf::Task, &limits)
        .await
        .unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::Unavailable, "{e}");
    assert_eq!(
        sim.truth_of("c1").task.unwrap().resources,
        Some(limits),
        "the effect happened"
    );
    let whats: Vec<&str> = sim.fault_log().iter().map(|f| f.what).collect();
    assert_eq!(whats, ["Tasks.Update", "Logs.Reopen", "Tasks.Update"]);
    // A hang: the call never answers (the caller's deadline ends it).
    sim.set_faults(calls(|c| c.hang = 1.0));
    let hung = tokio::time::timeout(Duration::from_secs(30), sim.reopen_log(&id)).await;
    assert!(hung.is_err(), "hung: {hung:?}");
}

#[tokio::test(start_paused = true)]
async fn a_metadata_read_fault_hits_one_listing_of_a_container_record() {
    let sim = sim(6);
    pod(&sim, "p1").await;
    for c in ["c1", "c2", "c3"] {
        sim.create_container(&container_meta("p1", c))
            .await
            .unwrap();
    }
    sim.set_faults(calls(|c| c.meta_read = 1.0));
    let listing = sim.list().await.unwrap();
    assert_eq!(listing.containers.len(), 3, "every record is still listed");
    assert!(listing.containers.iter().all(|l| l.meta.is_err()));
    assert!(
        listing.sandboxes[0].meta.is_ok(),
        "pause containers are read"
    );
    assert_eq!(sim.fault_counts().get(FaultKind::MetaRead), 3);
    assert_eq!(sim.fault_log()[0].what, "Containers.List");
    // Transient: the truth keeps the metadata, and a listing without the fault reads it.
    assert!(sim.truth().records["c1"].meta_error.is_none());
    sim.set_faults(FaultPlan::none());
    let listing = sim.list().await.unwrap();
    assert!(listing.containers.iter().all(|l| l.meta.is_ok()));
    // With a partial rate, some listings read a record and some do not.
    sim.set_faults(calls(|c| c.meta_read = 0.5));
    let mut read = 0;
    for _ in 0..40 {
        let l = sim.list().await.unwrap();
        read += l.containers.iter().filter(|l| l.meta.is_ok()).count();
    }
    assert!((30..90).contains(&read), "{read} of 120 reads succeeded");
}

#[test]
fn metadata_read_faults_are_on_in_about_half_the_plans_with_a_rate_from_the_menu() {
    let mut on = 0;
    for seed in 0..200 {
        let rate = FaultPlan::from_seed(seed).calls.meta_read;
        assert!(
            [0.0, 0.02, 0.1, 0.25].contains(&rate),
            "seed {seed}: {rate}"
        );
        on += usize::from(rate > 0.0);
    }
    assert!(
        (60..140).contains(&on),
        "meta reads on in {on} of 200 plans"
    );
}

#[tokio::test(start_paused = true)]
async fn an_exit_race_kills_the_shim_of_a_task_whose_exit_is_being_recorded() {
    let sim = sim(7);
    pod(&sim, "p1").await;
    run(&sim, "p1", "c1", ProcessPlan::exit(Duration::ZERO, 3)).await;
    assert_eq!(sim.wait_task(&ct("c1")).await.unwrap().code, 3);
    assert!(sim.exit_race(&ct("c1")).is_none(), "off in the none plan");
    let mut plan = FaultPlan::none();
    plan.chaos.exit_race = 1.0;
    sim.set_faults(plan);
    assert!(
        sim.exit_race(&ct("nope")).is_none(),
        "no task, no shim to kill"
    );
    let death = sim.exit_race(&ct("c1")).expect("the race is on");
    assert_eq!(
        death.lost,
        vec![ct("c1")],
        "the stopped task's status died with it"
    );
    assert_eq!(sim.fault_counts().get(FaultKind::ExitRace), 1);
    // The conflicting observation: the task is gone, and its real exit is marked lost.
    assert_eq!(
        sim.task_status(&ct("c1")).await.unwrap(),
        TaskState::NotFound
    );
    assert!(
        sim.truth()
            .last_exit("c1")
            .is_some_and(|e| e.shim_died && e.code == 3)
    );
}

#[test]
fn exit_races_are_on_in_about_half_the_plans_with_a_rate_from_the_menu() {
    let mut on = 0;
    for seed in 0..200 {
        let rate = FaultPlan::from_seed(seed).chaos.exit_race;
        assert!([0.0, 0.02, 0.1].contains(&rate), "seed {seed}: {rate}");
        on += usize::from(rate > 0.0);
    }
    assert!(
        (60..140).contains(&on),
        "exit races on in {on} of 200 plans"
    );
}
