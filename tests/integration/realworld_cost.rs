//! The shared real-world cost cases (`../shared/data/realworld`, or
//! `DRACO_REALWORLD_DIR`), run as their README says: from the case folder,
//! `draco --data-dir <tmp> --config draco.toml scan --once`.

use crate::support::{Draco, kinds_and_resources, realworld_case, scan_realworld_case};

#[test]
fn monthly_tax_is_not_a_new_service_when_the_history_starts_after_a_first() {
    let Some(case) = realworld_case("13-cost-monthly-tax-new-service") else {
        return;
    };
    let (_, findings) = scan_realworld_case(&Draco::new(), &case);
    assert!(
        findings.iter().all(|f| f["kind"] != "cost_new_service"),
        "{:?}",
        kinds_and_resources(&findings)
    );
}

#[test]
fn monthly_tax_is_not_a_new_service_when_the_history_starts_on_the_20th() {
    let Some(case) = realworld_case("13-cost-monthly-tax-new-service/control-history-from-20th")
    else {
        return;
    };
    let (_, findings) = scan_realworld_case(&Draco::new(), &case);
    assert!(
        findings.iter().all(|f| f["kind"] != "cost_new_service"),
        "{:?}",
        kinds_and_resources(&findings)
    );
}

/// The same kind without the shared corpus: charges that post on a fixed
/// day of the month (tax on the 1st, a support plan on the 1st, a Savings
/// Plans fee on the 14th) in a history of 100 days that begins on the 2nd,
/// beside a service that is really new (daily usage from day 60): only that
/// one is new.
#[test]
fn fixed_day_charges_are_not_new_but_new_daily_usage_is() {
    use chrono::{Datelike, Duration, NaiveDate};
    let draco = Draco::new();
    let fixtures = draco.path("fixtures");
    std::fs::create_dir_all(&fixtures).expect("fixtures dir");
    let first = NaiveDate::from_ymd_opt(2026, 8, 2).expect("a date");
    let mut csv = String::from("date,account_id,service,amount_usd,estimated\n");
    for i in 0..100 {
        let day = first + Duration::days(i);
        let ec2 = 200.0 + (i % 5) as f64;
        csv += &format!("{day},123456789012,Amazon Elastic Compute Cloud - Compute,{ec2},false\n");
        if day.day() == 1 {
            csv += &format!("{day},123456789012,Tax,{},false\n", 380.0 + i as f64);
            csv += &format!("{day},123456789012,AWS Support (Business),100.00,false\n");
        }
        if day.day() == 14 {
            csv +=
                &format!("{day},123456789012,Savings Plans for AWS Compute usage,720.00,false\n");
        }
        if i >= 60 {
            csv += &format!(
                "{day},123456789012,Amazon SageMaker,{},false\n",
                80.0 + (i % 3) as f64
            );
        }
    }
    std::fs::write(fixtures.join("cost.csv"), csv).expect("write cost.csv");
    let config = draco.path("draco.toml");
    std::fs::write(
        &config,
        format!("[source]\nkind = \"fixtures\"\nfixtures_dir = {fixtures:?}\n"),
    )
    .expect("write config");
    let config = config.to_string_lossy().into_owned();
    draco.ok(&["--config", &config, "scan", "--once"]);
    let new: Vec<String> = draco
        .findings()
        .iter()
        .filter(|f| f["kind"] == "cost_new_service")
        .map(|f| f["resource"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(new, vec!["service:Amazon SageMaker".to_owned()]);
}
