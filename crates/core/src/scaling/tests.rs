//! The scaler's decisions, case by case and by property.
use super::*;

const MIN: u64 = 60_000;

fn m5_large() -> InstanceType {
    InstanceType {
        name: "m5.large".into(),
        room: registered(2, 8192, 0),
    }
}

fn types() -> Vec<InstanceType> {
    vec![
        m5_large(),
        InstanceType {
            name: "m5a.large".into(),
            room: registered(2, 8192, 0),
        },
    ]
}

/// The list prices: an m5.large at Spot with its root volume is $0.0417
/// an hour.
static PRICES: std::sync::LazyLock<crate::prices::Prices> =
    std::sync::LazyLock::new(crate::prices::Prices::default);

fn config() -> Config<'static> {
    Config {
        min: 0,
        max: 10,
        quiet_ms: 15 * MIN,
        headroom: 0,
        prices: &PRICES,
    }
}

fn member(
    id: u32,
    state: MemberState,
    free: Room,
    tasks: u32,
    idle_min: Option<u64>,
) -> Member<u32> {
    Member {
        id,
        state,
        free,
        tasks,
        idle_since: idle_min.map(|m| m * MIN),
        launched: None,
    }
}

fn full() -> Room {
    registered(2, 8192, 0)
}

const RENDER: Room = Room {
    cpu: 1024,
    memory: 2048,
    gpu: 0,
    arch: crate::prices::Arch::X86_64,
};

#[test]
fn an_m5_large_registers_what_ecs_says_of_an_m4_large() {
    assert_eq!(registered(2, 8192, 0), Room::new(2048, 7985, 0));
    assert_eq!(
        InstanceType::known("m5.large").unwrap().room,
        Room::new(2048, 7985, 0)
    );
    assert_eq!(
        InstanceType::known("g4dn.xlarge").unwrap().room,
        Room::new(4096, 15_970, 1)
    );
    assert_eq!(InstanceType::known("m5.huge"), None);
    assert_eq!(InstanceType::known("# EC2 instance types: name"), None);
}

#[test]
fn an_instance_that_never_registers_is_replaced_at_the_deadline() {
    let waiting = Demand {
        waiting: vec![(Room::new(1024, 2048, 0), 1)],
        fell_back: Vec::new(),
    };
    let launching = |launched_min| Member {
        launched: Some(launched_min * MIN),
        ..member(7, MemberState::Launching, full(), 0, None)
    };
    // Launched 9 minutes ago: still on its way, its room counted.
    let p = plan(9 * MIN, &[launching(0)], &waiting, &types(), None, config());
    assert_eq!((p.add, p.terminate.len()), (0, 0), "{:?}", p.reasons);
    // Past the deadline: it goes, and the job waiting for it gets another.
    let now = u64::from(REGISTRATION_DEADLINE_SECONDS) * 1000;
    let p = plan(now, &[launching(0)], &waiting, &types(), None, config());
    assert_eq!(p.terminate, [7], "{:?}", p.reasons);
    assert_eq!(p.add, 1, "{:?}", p.reasons);
    assert!(
        p.reasons.iter().any(|r| r.contains("not registered")),
        "{:?}",
        p.reasons
    );
    // With nothing waiting it goes all the same: it is billed for nothing.
    let p = plan(
        now,
        &[launching(0)],
        &Demand::default(),
        &types(),
        None,
        config(),
    );
    assert_eq!((p.terminate.as_slice(), p.add), (&[7][..], 0));
    assert!(p.at_rest);
}

#[test]
fn an_instance_releases_the_waiting_jobs_it_holds_largest_first() {
    let waiting = [
        (Room::new(1024, 2048, 0), "small"),
        (Room::new(4096, 8192, 0), "large"),
        (Room::new(1024, 1024, 1), "gpu"),
        (Room::new(2048, 4096, 0), "medium"),
    ];
    // 4 vCPUs, 15 GiB, no GPU: the large one, then nothing else fits.
    assert_eq!(release(&waiting, Room::new(4096, 15_000, 0)), ["large"]);
    // 8 vCPUs: large, medium, small; never the GPU job.
    assert_eq!(
        release(&waiting, Room::new(8192, 30_000, 0)),
        ["large", "medium", "small"]
    );
    assert_eq!(release(&waiting, Room::new(1024, 1024, 1)), ["gpu"]);
    assert!(release(&waiting, Room::default()).is_empty());
}

#[test]
fn nothing_asked_nothing_launched() {
    let p = plan(
        0,
        &[] as &[Member<u32>],
        &Demand::default(),
        &types(),
        None,
        config(),
    );
    assert!(p.is_empty(), "{p:?}");
}

#[test]
fn waiting_jobs_launch_what_they_need_beyond_what_is_coming() {
    let demand = Demand {
        waiting: vec![(RENDER, 5)],
        fell_back: vec![],
    };
    // From nothing: two per instance, so three instances.
    let p = plan(0, &[] as &[Member<u32>], &demand, &types(), None, config());
    assert_eq!(p.add, 3, "{p:?}");
    // One on its way, and one active with room for one: one more.
    let members = [
        member(1, MemberState::Launching, full(), 0, None),
        member(2, MemberState::Active, Room::new(1024, 3000, 0), 1, None),
    ];
    let p = plan(0, &members, &demand, &types(), None, config());
    assert_eq!(p.add, 1, "{p:?}");
    // Never beyond the maximum.
    let small = Config { max: 2, ..config() };
    let p = plan(0, &members, &demand, &types(), None, small);
    assert_eq!(p.add, 0, "{p:?}");
}

#[test]
fn work_on_fargate_starts_instances_only_where_they_pay() {
    // RENDER on Fargate Spot ($0.0148 an hour) and on Fargate on
    // demand ($0.0494): two fill an m5.large ($0.0417 with its
    // volume, $0.0521 with the margin).
    let demand = |n, hourly| Demand {
        waiting: vec![],
        fell_back: vec![Elsewhere {
            need: RENDER,
            count: n,
            hourly,
        }],
    };
    let none: &[Member<u32>] = &[];
    // On Fargate Spot, an instance never pays, however much runs.
    let p = plan(0, none, &demand(40, 0.0148), &types(), None, config());
    assert!(p.is_empty(), "{p:?}");
    // On demand, two fill an instance that costs less than they do.
    let p = plan(0, none, &demand(2, 0.0494), &types(), None, config());
    assert_eq!(p.add, 1);
    assert!(
        p.reasons[0]
            .contains("2 job(s) on Fargate fill 1 m5a.large that cost less than Fargate for them"),
        "{p:?}"
    );
    // Five fill two instances; the fifth alone would leave one half
    // idle, and half an instance's work does not pay for it.
    let p = plan(0, none, &demand(5, 0.0494), &types(), None, config());
    assert_eq!(p.add, 2);
    let p = plan(0, none, &demand(1, 0.0494), &types(), None, config());
    assert!(p.is_empty(), "{p:?}");
    // Room on the way counts first.
    let coming = [member(1, MemberState::Launching, full(), 0, None)];
    let p = plan(0, &coming, &demand(3, 0.0494), &types(), None, config());
    assert!(p.is_empty(), "{p:?}");
    // At the margin: value above 1.25 times the instance's price.
    let at = 0.0417 * PAYS_MARGIN / 2.0;
    assert_eq!(
        paying(
            &demand(2, at * 0.99).fell_back,
            &[],
            full(),
            0.0417 * PAYS_MARGIN
        ),
        0
    );
    assert_eq!(
        paying(
            &demand(2, at * 1.01).fell_back,
            &[],
            full(),
            0.0417 * PAYS_MARGIN
        ),
        1
    );
}

#[test]
fn the_scaler_rests_only_when_nothing_may_need_it() {
    let none: &[Member<u32>] = &[];
    let rest = plan(0, none, &Demand::default(), &types(), None, config());
    assert!(rest.at_rest && rest.is_empty(), "{rest:?}");
    // A job waiting for capacity, or an instance in the group: not at rest.
    let waiting = Demand {
        waiting: vec![(RENDER, 1)],
        fell_back: vec![],
    };
    assert!(!plan(0, none, &waiting, &types(), None, config()).at_rest);
    let one = [member(1, MemberState::Active, full(), 1, None)];
    assert!(!plan(0, &one, &Demand::default(), &types(), None, config()).at_rest);
    // The last drained instance going: at rest once it has gone.
    let last = [member(1, MemberState::Retiring, full(), 0, Some(0))];
    let p = plan(
        20 * MIN,
        &last,
        &Demand::default(),
        &types(),
        None,
        config(),
    );
    assert_eq!(p.terminate, [1]);
    assert!(p.at_rest, "{p:?}");
    // Work on Fargate Spot that no instance would run for less: at
    // rest; on Fargate on demand, where one would: not.
    let on = |hourly| Demand {
        waiting: vec![],
        fell_back: vec![Elsewhere {
            need: RENDER,
            count: 1,
            hourly,
        }],
    };
    assert!(plan(0, none, &on(0.0148), &types(), None, config()).at_rest);
    assert!(!plan(0, none, &on(0.0494), &types(), None, config()).at_rest);
}

#[test]
fn an_idle_instance_is_kept_for_the_price_of_a_relaunch() {
    // A relaunch bills a minute at least and takes 40 s to register.
    assert_eq!(idle_break_even_seconds(40), 100);
    assert_eq!(idle_break_even_seconds(90), 180);
    assert_eq!(DEFAULT_SCALE_IN_AFTER_SECONDS, 100);
}

#[test]
fn demand_no_type_can_hold_is_never_scaled_for() {
    let train = Room::new(4096, 16_384, 1);
    let demand = Demand {
        waiting: vec![(train, 4)],
        fell_back: vec![],
    };
    let p = plan(0, &[] as &[Member<u32>], &demand, &types(), None, config());
    assert!(p.is_empty(), "{p:?}");
    // What only some of the group's types hold starts one of those.
    let mixed = vec![
        m5_large(),
        InstanceType {
            name: "m5.xlarge".into(),
            room: registered(4, 16_384, 0),
        },
    ];
    let big = Room::new(4096, 8192, 0);
    let demand = Demand {
        waiting: vec![(big, 1)],
        fell_back: vec![],
    };
    let p = plan(0, &[] as &[Member<u32>], &demand, &mixed, None, config());
    assert_eq!(
        (p.add, p.types.as_slice()),
        (1, &["m5.xlarge".to_owned()][..])
    );
    assert_eq!(fit(big, &mixed), Fit::Some(vec!["m5.xlarge".into()]));
    assert_eq!(fit(train, &mixed), Fit::None);
    assert_eq!(fit(RENDER, &mixed), Fit::Every);
    assert_eq!(fit(RENDER, &[]), Fit::None);
}

#[test]
fn the_largest_container_leaves_out_what_the_group_cannot_run() {
    let defs = vec![
        ("render".to_owned(), RENDER),
        ("train".to_owned(), Room::new(4096, 16_384, 1)),
        ("big".to_owned(), Room::new(2048, 7000, 0)),
    ];
    let (largest, out) = largest_container(&defs, &types());
    assert_eq!(
        largest.unwrap().resources(),
        Resources {
            cpu: 2048,
            memory: 7000
        }
    );
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].to_string(),
        "job definition `train` (4096 CPU units / 16384 MiB / 1 GPU) fits no instance type of the group: its jobs never run on EC2, and the group is not scaled for them"
    );
    let (none, out) = largest_container(&defs[1..2], &types());
    assert_eq!((none, out.len()), (None, 1));
}

#[test]
fn idle_instances_drain_after_the_quiet_period_and_go_when_empty() {
    let members = [
        member(1, MemberState::Active, full(), 0, Some(0)),
        member(2, MemberState::Active, full(), 0, Some(10)),
        member(3, MemberState::Active, Room::new(1024, 5937, 0), 1, None),
        member(4, MemberState::Retiring, full(), 0, Some(0)),
        member(5, MemberState::Retiring, Room::new(1024, 5937, 0), 1, None),
        member(6, MemberState::Draining, full(), 0, Some(19)),
    ];
    // At minute 20: 1 has been idle 20 minutes, 2 only 10; 3 runs a
    // task; 4 is drained and empty; 5 is draining with a task; 6 was
    // drained by a Spot warning.
    let p = plan(
        20 * MIN,
        &members,
        &Demand::default(),
        &types(),
        None,
        config(),
    );
    assert_eq!(p.drain, vec![1]);
    assert_eq!(p.terminate, vec![4, 6]);
    assert_eq!(p.add, 0);
    // Never below the minimum: with a minimum of 5, 1 stays.
    let p = plan(
        20 * MIN,
        &members,
        &Demand::default(),
        &types(),
        None,
        Config { min: 5, ..config() },
    );
    assert!(p.drain.is_empty(), "{p:?}");
    // A job waiting for capacity keeps the room it will take when its
    // message comes back.
    let one = Demand {
        waiting: vec![(RENDER, 1)],
        fell_back: vec![],
    };
    let p = plan(20 * MIN, &members, &one, &types(), None, config());
    assert!(p.drain.is_empty() && p.add == 0, "{p:?}");
    // Demand stops the draining.
    let demand = Demand {
        waiting: vec![(RENDER, 6)],
        fell_back: vec![],
    };
    let p = plan(20 * MIN, &members, &demand, &types(), None, config());
    assert!(p.drain.is_empty(), "{p:?}");
    // ... and brings a retiring instance back first: 1, 2 and 3 hold
    // five of the six jobs, 4 the sixth; 5 still runs a task.
    assert_eq!(p.reactivate, vec![4]);
    assert_eq!(p.terminate, vec![6], "the warned instance still goes");
    assert_eq!(p.add, 0, "{p:?}");
    let more = Demand {
        waiting: vec![(RENDER, 9)],
        fell_back: vec![],
    };
    let p = plan(20 * MIN, &members, &more, &types(), None, config());
    assert_eq!((p.reactivate.clone(), p.add), (vec![4, 5], 1), "{p:?}");
}

#[test]
fn headroom_is_kept_only_while_the_cluster_is_in_use() {
    let largest = LargestContainer::new(1024, 2048).ok();
    let with_headroom = Config {
        headroom: 1,
        ..config()
    };
    // In use and full: one more instance.
    let busy = [member(
        1,
        MemberState::Active,
        Room::new(0, 3889, 0),
        2,
        None,
    )];
    let p = plan(
        0,
        &busy,
        &Demand::default(),
        &types(),
        largest,
        with_headroom,
    );
    assert_eq!(p.add, 1, "{p:?}");
    // Idle for long, nothing running: no headroom kept, it drains.
    let idle = [member(1, MemberState::Active, full(), 0, Some(0))];
    let p = plan(
        20 * MIN,
        &idle,
        &Demand::default(),
        &types(),
        largest,
        with_headroom,
    );
    assert_eq!((p.add, p.drain.clone()), (0, vec![1]));
    // In use: the idle instance that is the only headroom stays.
    let both = [
        busy[0].clone(),
        member(2, MemberState::Active, full(), 0, Some(0)),
    ];
    let p = plan(
        20 * MIN,
        &both,
        &Demand::default(),
        &types(),
        largest,
        with_headroom,
    );
    assert!(p.is_empty(), "{p:?}");
}

#[test]
fn the_minimum_is_kept() {
    let p = plan(
        0,
        &[] as &[Member<u32>],
        &Demand::default(),
        &types(),
        None,
        Config { min: 2, ..config() },
    );
    assert_eq!(p.add, 2);
}

#[test]
fn the_count_packs_largest_first_into_what_is_there() {
    let m5 = full();
    assert_eq!(pack(&[(RENDER, 3)], &[], m5), Packed { new: 2, full: 1 });
    assert_eq!(
        pack(&[(RENDER, 3), (Room::new(1024, 1024, 0), 1)], &[], m5),
        Packed { new: 2, full: 2 }
    );
    let needs = [(RENDER, 3), (Room::new(2048, 4096, 0), 1)];
    assert_eq!(instances_needed(&needs, &[Room::new(1024, 4000, 0)], m5), 2);
    assert_eq!(instances_needed(&needs, &[], m5), 3);
    assert_eq!(instances_needed(&[], &[], m5), 0);
    assert_eq!(
        instances_needed(&[(Room::new(4096, 16_384, 0), 5)], &[], m5),
        0
    );
    // Memory-bound: 7985 MiB holds three 2500 MiB tasks.
    assert_eq!(
        instances_needed(&[(Room::new(128, 2500, 0), 7)], &[], m5),
        3
    );
    // A task asking nothing of a resource still takes a place.
    assert_eq!(Room::new(0, 0, 0).fits_times(m5), u32::MAX);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn any_member() -> impl Strategy<Value = (u8, u32, u32, Option<u64>)> {
        (0u8..4, 0u32..4, 0u32..=3, prop::option::of(0u64..40))
    }

    fn any_need() -> impl Strategy<Value = (Room, u32)> {
        (
            prop_oneof![
                Just(RENDER),
                Just(Room::new(2048, 4096, 0)),
                Just(Room::new(4096, 16_384, 1))
            ],
            1u32..8,
        )
    }

    proptest! {
        /// Whatever the cluster and the demand: only drained instances
        /// with no task are terminated, only idle active ones drained,
        /// the group never goes past its maximum, and nothing is added
        /// for demand no instance type can hold.
        #[test]
        fn the_plan_never_touches_a_task_and_stays_in_bounds(
            raw in prop::collection::vec(any_member(), 0..12),
            waiting in prop::collection::vec(any_need(), 0..3),
            fell_back in prop::collection::vec(any_need(), 0..3),
            max in 0u32..12,
            min in 0u32..3,
            now_min in 0u64..60,
        ) {
            let members: Vec<Member<usize>> = raw
                .iter()
                .enumerate()
                .map(|(i, &(state, tasks, used, idle))| {
                    let state = [
                        MemberState::Launching,
                        MemberState::Active,
                        MemberState::Retiring,
                        MemberState::Draining,
                    ][state as usize];
                    let tasks = if state == MemberState::Launching { 0 } else { tasks };
                    let mut free = full();
                    for _ in 0..used.min(tasks) {
                        free.take(RENDER);
                    }
                    Member {
                        id: i,
                        state,
                        free,
                        tasks,
                        idle_since: if tasks == 0 { idle.map(|m| m * MIN) } else { None },
                        launched: None,
                    }
                })
                .collect();
            let fell_back: Vec<Elsewhere> = fell_back
                .into_iter()
                .map(|(need, count)| Elsewhere { need, count, hourly: 0.05 })
                .collect();
            let demand = Demand { waiting, fell_back };
            let config = Config { min: min.min(max), max, quiet_ms: 15 * MIN, headroom: 0, prices: &PRICES };
            let p = plan(now_min * MIN, &members, &demand, &types(), None, config);
            for id in &p.terminate {
                let m = &members[*id];
                prop_assert!(m.tasks == 0, "terminated with tasks: {m:?}");
                prop_assert!(matches!(m.state, MemberState::Retiring | MemberState::Draining));
            }
            for id in &p.drain {
                let m = &members[*id];
                prop_assert!(m.tasks == 0 && m.state == MemberState::Active, "{m:?}");
                prop_assert!(m.idle_since.is_some_and(|s| s + config.quiet_ms <= now_min * MIN));
            }
            for id in &p.reactivate {
                prop_assert_eq!(members[*id].state, MemberState::Retiring);
                prop_assert!(!p.terminate.contains(id) && !p.drain.contains(id));
            }
            let staying = members.len() as u32 - p.terminate.len() as u32;
            prop_assert!(p.add == 0 || staying + p.add <= max.max(config.min), "{p:?}");
            let fits = |needs: &[(Room, u32)]| needs.iter().any(|(n, _)| fit(*n, &types()) == Fit::Every);
            let elsewhere: Vec<(Room, u32)> = demand.fell_back.iter().map(|e| (e.need, e.count)).collect();
            if !fits(&demand.waiting) && !fits(&elsewhere) {
                prop_assert!(staying + p.add <= config.min.max(staying), "added for nothing: {p:?}");
            }
        }
    }
}

/// The types template.yaml allows by default.
fn allowed() -> Vec<InstanceType> {
    let allowed = choice::Allowed {
        entries: [
            "m5", "m6i", "m7i", "c5", "c6i", "c7i", "r5", "r6i", "r7i", "m6g", "m7g", "c6g", "c7g",
            "r6g", "r7g", "g4dn", "g5", "g6",
        ]
        .map(String::from)
        .to_vec(),
        vcpus: (2, 64),
        memory_gib: (0, 1024),
        architectures: vec![crate::prices::Arch::X86_64, crate::prices::Arch::Arm64],
    };
    known_types(&allowed.types()).expect("types")
}

#[test]
fn a_huge_job_waiting_starts_a_type_that_holds_it() {
    let types = allowed();
    let huge = Room::new(16 * 1024, 64 * 1024, 0);
    let demand = Demand {
        waiting: vec![(huge, 1)],
        fell_back: vec![],
    };
    let p = plan(0, &[] as &[Member<u32>], &demand, &types, None, config());
    assert_eq!(p.add, 1, "{p:?}");
    assert!(!p.types.is_empty());
    for t in &p.types {
        let room = types.iter().find(|k| k.name == *t).unwrap().room;
        assert!(huge.fits(room), "{t} does not hold it: {p:?}");
    }
    assert_ne!(p.types[0], types[0].name);
    assert!(
        p.reasons[0].contains("1 job(s) waiting for capacity"),
        "{p:?}"
    );
    // An instance of it on its way: nothing more.
    let room = types.iter().find(|k| k.name == p.types[0]).unwrap().room;
    let coming = [Member {
        launched: Some(0),
        ..member(1, MemberState::Launching, room, 0, None)
    }];
    assert_eq!(plan(MIN, &coming, &demand, &types, None, config()).add, 0);
}

#[test]
fn a_gpu_job_waiting_starts_a_gpu_type_and_small_jobs_a_small_one() {
    let types = allowed();
    let train = Room::new(4096, 15 * 1024, 1);
    let demand = Demand {
        waiting: vec![(train, 1)],
        fell_back: vec![],
    };
    let p = plan(0, &[] as &[Member<u32>], &demand, &types, None, config());
    assert_eq!(p.add, 1);
    for t in &p.types {
        assert!(
            types.iter().any(|k| k.name == *t && k.room.gpu >= 1),
            "{t}: {p:?}"
        );
    }
    // Two kinds of jobs that want different types: the first this run,
    // the other the next.
    let demand = Demand {
        waiting: vec![(train, 1), (RENDER.on(Arch::Arm64), 1)],
        fell_back: vec![],
    };
    let p = plan(0, &[] as &[Member<u32>], &demand, &types, None, config());
    assert_eq!(p.add, 1, "{p:?}");
    assert!(p.reasons[0].contains("on the next run"), "{p:?}");
    let small = Demand {
        waiting: vec![(RENDER, 1)],
        fell_back: vec![],
    };
    let p = plan(0, &[] as &[Member<u32>], &small, &types, None, config());
    let cheapest = p.types[0].clone();
    let room = types.iter().find(|k| k.name == cheapest).unwrap().room;
    assert!(room.cpu <= 2048 && room.gpu == 0, "{p:?}");
}

#[test]
fn a_job_starts_an_instance_of_its_architecture_only() {
    let types = allowed();
    let arch_of = |p: &Plan<u32>| {
        let kinds: Vec<Arch> = p
            .types
            .iter()
            .map(|t| types.iter().find(|k| k.name == *t).unwrap().room.arch)
            .collect();
        kinds
    };
    let on = |arch| Demand {
        waiting: vec![(RENDER.on(arch), 2)],
        fell_back: vec![],
    };
    let none: &[Member<u32>] = &[];
    let arm = plan(0, none, &on(Arch::Arm64), &types, None, config());
    assert!(
        arm.add > 0 && arch_of(&arm).iter().all(|a| *a == Arch::Arm64),
        "{arm:?}"
    );
    let x86 = plan(0, none, &on(Arch::X86_64), &types, None, config());
    assert!(
        x86.add > 0 && arch_of(&x86).iter().all(|a| *a == Arch::X86_64),
        "{x86:?}"
    );
    // Room of the other architecture on its way is not theirs.
    let coming = [member(
        1,
        MemberState::Launching,
        full().on(Arch::Arm64),
        0,
        None,
    )];
    assert_eq!(
        plan(0, &coming, &on(Arch::X86_64), &types, None, config()).add,
        1
    );
    assert_eq!(
        plan(0, &coming, &on(Arch::Arm64), &types, None, config()).add,
        0
    );
    assert!(!RENDER.fits(full().on(Arch::Arm64)));
    assert_eq!(RENDER.fits_times(full().on(Arch::Arm64)), 0);
    // Where its architecture is not known, any type of any holds it.
    assert!(unplaceable(RENDER, &types[..0]).is_some());
    let graviton = known_types(&["m7g.large".to_owned()]).unwrap();
    assert_eq!(unplaceable(RENDER, &graviton), None);
}
