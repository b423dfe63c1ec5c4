use super::*;
use crate::schedule::CronSchedule;

const SETTINGS: PolicySettings = PolicySettings {
    fallback_interval_seconds: 60,
    sla_scheduling: false,
};

fn st(id: i64, schedule: &str, last_refresh: Option<i64>) -> TableState {
    TableState {
        id,
        schedule: Schedule::parse(schedule).expect("schedule"),
        tier: Tier::Hot,
        last_refresh: last_refresh.map(|t| t * 1000),
        last_change: last_refresh.map(|t| t * 1000),
        reads_tables: true,
        suspended: false,
        retry_at: None,
    }
}

/// `next_actions` at `now` in seconds (the policy's times are milliseconds).
fn due_at(
    now: i64,
    states: &[TableState],
    dag: &Dag<i64>,
    settings: PolicySettings,
) -> Vec<Action> {
    next_actions(now * 1000, states, dag, settings)
}

fn ids(actions: &[Action]) -> Vec<i64> {
    actions.iter().map(|a| a.id).collect()
}

#[test]
fn intervals_are_due_once_they_pass_and_never_refreshed_is_due() {
    let states = [
        st(1, "5s", Some(100)),
        st(2, "5s", Some(96)),
        st(3, "1m", None),
    ];
    let actions = due_at(100, &states, &Dag::new(), SETTINGS);
    assert_eq!(ids(&actions), vec![3]);
    let actions = due_at(105, &states, &Dag::new(), SETTINGS);
    assert_eq!(ids(&actions), vec![1, 2, 3]);
    assert_eq!(actions[1].overdue_seconds, 4);
    assert_eq!(actions[0].trigger, Trigger::Schedule);
}

#[test]
fn tiers_multiply_the_interval_and_frozen_is_never_scheduled() {
    let mut warm = st(1, "10s", Some(0));
    warm.tier = Tier::Warm;
    let mut cold = st(2, "10s", Some(0));
    cold.tier = Tier::Cold;
    let mut frozen = st(3, "1s", None);
    frozen.tier = Tier::Frozen;
    let states = [warm, cold, frozen];
    assert!(due_at(19, &states, &Dag::new(), SETTINGS).is_empty());
    assert_eq!(ids(&due_at(20, &states, &Dag::new(), SETTINGS)), vec![1]);
    assert_eq!(ids(&due_at(99, &states, &Dag::new(), SETTINGS)), vec![1]);
    assert_eq!(
        ids(&due_at(100, &states, &Dag::new(), SETTINGS)),
        vec![1, 2]
    );
}

#[test]
fn calculated_follows_its_upstreams_in_the_same_cycle() {
    // bronze table -> silver '5s' -> gold 'calculated' (reads only silver)
    let mut gold = st(2, "calculated", Some(100));
    gold.reads_tables = false;
    let states = [st(1, "5s", Some(100)), gold];
    let dag = Dag::from_edges([(1, 2)]);
    assert!(due_at(104, &states, &dag, SETTINGS).is_empty());
    let actions = due_at(105, &states, &dag, SETTINGS);
    assert_eq!(ids(&actions), vec![1, 2]);
    assert_eq!(actions[1].trigger, Trigger::Upstream(vec![1]));
    // long after, with silver not due and unchanged since gold's refresh: gold is not
    // refreshed on its own
    let mut silver = st(1, "5s", Some(1000));
    silver.last_change = Some(90_000);
    let states = [silver, states[1].clone()];
    assert!(due_at(1002, &states, &dag, SETTINGS).is_empty());
}

#[test]
fn a_calculated_upstream_takes_the_tightest_schedule_of_its_dependants() {
    // 1 'calculated' read by 2 '30s' (warm: 60s) and 3 '1m'
    let mut two = st(2, "30s", Some(0));
    two.tier = Tier::Warm;
    let states = [st(1, "calculated", Some(0)), two, st(3, "1m", Some(0))];
    let dag = Dag::from_edges([(1, 2), (1, 3)]);
    assert!(due_at(59, &states, &dag, SETTINGS).is_empty());
    let actions = due_at(60, &states, &dag, SETTINGS);
    assert_eq!(ids(&actions), vec![1, 2, 3]);
    assert_eq!(actions[0].trigger, Trigger::Schedule);
    // without dependants, calculated reading tables uses the fallback interval
    let states = [st(7, "calculated", Some(0))];
    assert!(due_at(59, &states, &Dag::new(), SETTINGS).is_empty());
    assert_eq!(ids(&due_at(60, &states, &Dag::new(), SETTINGS)), vec![7]);
}

#[test]
fn fan_out_and_diamonds_run_upstreams_first() {
    // 1 -> 2, 1 -> 3, 2 -> 4, 3 -> 4; all calculated below a '1s' source
    let mut states = vec![st(1, "1s", Some(0))];
    for id in 2..=4 {
        let mut s = st(id, "calculated", Some(0));
        s.reads_tables = false;
        states.push(s);
    }
    let dag = Dag::from_edges([(1, 2), (1, 3), (2, 4), (3, 4)]);
    let actions = due_at(1, &states, &dag, SETTINGS);
    assert_eq!(ids(&actions), vec![1, 2, 3, 4]);
    assert_eq!(actions[3].trigger, Trigger::Upstream(vec![2, 3]));
}

#[test]
fn suspended_failed_and_immediate_stream_tables_wait() {
    let mut suspended = st(1, "1s", None);
    suspended.suspended = true;
    let mut failed = st(2, "1s", Some(0));
    failed.retry_at = Some(30_000);
    let states = [suspended, failed, st(3, "IMMEDIATE", None)];
    assert!(due_at(29, &states, &Dag::new(), SETTINGS).is_empty());
    assert_eq!(ids(&due_at(30, &states, &Dag::new(), SETTINGS)), vec![2]);
}

#[test]
fn sla_scheduling_starts_the_most_overdue_first() {
    // 1: '10s', 20 s late (2 intervals); 2: '1m', 30 s late (0.5); 3: '1s', 5 s late (5)
    let states = [
        st(1, "10s", Some(970)),
        st(2, "1m", Some(910)),
        st(3, "1s", Some(994)),
    ];
    let sla = PolicySettings {
        sla_scheduling: true,
        ..SETTINGS
    };
    assert_eq!(ids(&due_at(1000, &states, &Dag::new(), sla)), vec![3, 1, 2]);
    assert_eq!(
        ids(&due_at(1000, &states, &Dag::new(), SETTINGS)),
        vec![1, 2, 3]
    );
}

#[test]
fn cron_is_due_when_it_fired_since_the_last_refresh() {
    let every_five = CronSchedule::parse("*/5 * * * *").expect("cron");
    // 2026-01-01 00:00:00 UTC
    let midnight = 1_767_225_600;
    assert!(cron_fired_since(&every_five, midnight - 1, midnight));
    assert!(!cron_fired_since(&every_five, midnight, midnight + 299));
    assert!(cron_fired_since(&every_five, midnight, midnight + 300));
    let states = [TableState {
        schedule: Schedule::Cron(every_five),
        ..st(1, "1s", Some(midnight))
    }];
    assert!(due_at(midnight + 120, &states, &Dag::new(), SETTINGS).is_empty());
    assert_eq!(
        ids(&due_at(midnight + 300, &states, &Dag::new(), SETTINGS)),
        vec![1]
    );
    // weekday and month names: 2026-01-01 was a Thursday
    let thursdays = CronSchedule::parse("0 3 * jan thu").expect("cron");
    assert!(cron_fired_since(&thursdays, midnight, midnight + 3 * 3600));
    assert!(!cron_fired_since(
        &thursdays,
        midnight + 3 * 3600,
        midnight + 6 * 86_400
    ));
    assert!(cron_fired_since(
        &thursdays,
        midnight + 3 * 3600,
        midnight + 7 * 86_400 + 3 * 3600
    ));
}

#[test]
fn utc_minutes_are_calendar_minutes() {
    let t = utc_minute(0);
    assert_eq!(
        (t.minute, t.hour, t.day_of_month, t.month, t.day_of_week),
        (0, 0, 1, 1, 4)
    );
    // 2024-02-29 13:37 UTC, a Thursday
    let t = utc_minute(1_709_213_820 / 60);
    assert_eq!(
        (t.minute, t.hour, t.day_of_month, t.month, t.day_of_week),
        (37, 13, 29, 2, 4)
    );
    // 1969-12-31 23:59 UTC, a Wednesday
    let t = utc_minute(-1);
    assert_eq!(
        (t.minute, t.hour, t.day_of_month, t.month, t.day_of_week),
        (59, 23, 31, 12, 3)
    );
}

#[test]
fn calculated_follows_an_upstream_that_changed_after_its_last_refresh() {
    let dag = Dag::from_edges([(1, 2)]);
    let mut upstream = st(1, "1m", Some(100));
    upstream.last_change = Some(90_000);
    let mut downstream = st(2, "calculated", Some(95));
    downstream.reads_tables = false;
    // the upstream changed at 90, before the downstream's refresh at 95: nothing to do
    assert!(due_at(110, &[upstream.clone(), downstream.clone()], &dag, SETTINGS).is_empty());
    // a change at 100, after 95: the downstream follows, though the upstream is not due
    upstream.last_change = Some(100_000);
    let actions = due_at(110, &[upstream, downstream], &dag, SETTINGS);
    assert_eq!(ids(&actions), vec![2]);
    assert_eq!(actions[0].trigger, Trigger::Upstream(vec![1]));
}

#[test]
fn retries_back_off_doubling_up_to_five_minutes() {
    let delays: Vec<i64> = (0..12).map(retry_delay_seconds).collect();
    assert_eq!(delays, vec![0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    assert_eq!(retry_delay_seconds(u32::MAX), 300);
}

#[test]
fn times_count_to_the_millisecond() {
    // silver changed 0.8 s after gold's refresh, within the same second
    let dag = Dag::from_edges([(1, 2)]);
    let mut silver = st(1, "1m", Some(10));
    silver.last_change = Some(10_900);
    let mut gold = st(2, "calculated", None);
    gold.last_refresh = Some(10_100);
    gold.reads_tables = false;
    let actions = next_actions(11_000, &[silver, gold], &dag, SETTINGS);
    assert_eq!(ids(&actions), vec![2]);
    // a '1s' interval is due 1000 ms after the last refresh, not at the next whole second
    let one = TableState {
        last_refresh: Some(10_900),
        ..st(3, "1s", None)
    };
    assert!(next_actions(11_800, std::slice::from_ref(&one), &Dag::new(), SETTINGS).is_empty());
    assert_eq!(
        ids(&next_actions(11_900, &[one], &Dag::new(), SETTINGS)),
        vec![3]
    );
}

#[test]
fn the_next_due_time_is_the_earliest_schedule_or_retry() {
    let mut failed = st(2, "10s", Some(100));
    failed.retry_at = Some(125_000);
    let mut frozen = st(3, "1s", Some(100));
    frozen.tier = Tier::Frozen;
    let states = [st(1, "30s", Some(100)), failed, frozen];
    // 1 is due at 130 s, 2 at 110 s but not retried before 125 s
    assert_eq!(
        next_due(101_000, &states, &Dag::new(), SETTINGS),
        Some(125_000)
    );
    // cron: the next minute; never refreshed: now
    let states = [st(4, "*/5 * * * *", Some(100)), st(5, "1h", Some(100))];
    assert_eq!(
        next_due(101_500, &states, &Dag::new(), SETTINGS),
        Some(120_000)
    );
    let states = [st(6, "1h", None)];
    assert_eq!(
        next_due(101_500, &states, &Dag::new(), SETTINGS),
        Some(101_500)
    );
    // a calculated stream table reading only stream tables waits for its upstreams
    let mut gold = st(7, "calculated", Some(100));
    gold.reads_tables = false;
    assert_eq!(next_due(101_500, &[gold], &Dag::new(), SETTINGS), None);
}
