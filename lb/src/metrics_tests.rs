use super::*;

#[test]
fn summary_line_reports_rates_and_codes() {
    let before = Totals::default();
    let now = Totals {
        requests: 2_000,
        replies: 1_990,
        retries: 4,
        errors: [1, 0, 0, 2, 0],
        ..Totals::default()
    };
    let line = now.summary_line(&before, 2.0, &ServerSnapshot::new(3, vec![]));
    assert!(
        line.starts_with("1000 req/s, 995 replies/s, 4 retries"),
        "{line}"
    );
    assert!(line.contains("1=1 2=0 3=0 4=2 5=0"), "{line}");
    assert!(
        line.contains("0 live servers (registry version 3)"),
        "{line}"
    );
}

#[test]
fn totals_sum_every_worker() {
    let a = Arc::new(WorkerStats::default());
    let b = Arc::new(WorkerStats::default());
    bump(&a.replies);
    add(&b.replies, 2);
    bump(b.error(Status::Overloaded));
    a.count_drop(DropReason::QueueFull);
    b.count_drop(DropReason::QueueFull);
    let t = Totals::sum(&[a, b]);
    assert_eq!(t.replies, 3);
    assert_eq!(t.errors[usize::from(Status::Overloaded.to_u8() - 1)], 1);
    assert_eq!(t.drops[DropReason::QueueFull as usize], 2);
}
