//! Instances and images: IMDSv1, long-stopped instances, previous-generation
//! types, public AMIs.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::json;

use super::{PostureConfig, ebs_usd_per_gib_month, finding, tags_object};
use crate::domain::{Finding, FindingKind, Severity};
use crate::sources::RegionInventory;

/// Previous-generation families and the current family to move to.
/// From AWS's "previous generation instances" list; T2 is still current.
const PREVIOUS_GENERATION: [(&str, &str); 17] = [
    ("a1", "m7g"),
    ("c1", "c7i"),
    ("c3", "c7i"),
    ("c4", "c7i"),
    ("cc2", "c7i"),
    ("cr1", "r7i"),
    ("d2", "d3"),
    ("g2", "g5"),
    ("g3", "g5"),
    ("hs1", "d3"),
    ("i2", "i4i"),
    ("m1", "m7i"),
    ("m2", "r7i"),
    ("m3", "m7i"),
    ("m4", "m7i"),
    ("r3", "r7i"),
    ("t1", "t3"),
];

/// `m4.large` → `m7i.large`, when the family is a previous generation.
pub fn current_generation_for(instance_type: &str) -> Option<String> {
    let (family, size) = instance_type.split_once('.')?;
    let current = PREVIOUS_GENERATION
        .iter()
        .find(|(old, _)| *old == family)?
        .1;
    Some(format!("{current}.{size}"))
}

/// When the instance stopped, from `StateTransitionReason`:
/// `User initiated (2026-01-05 10:12:44 GMT)` (some emulators write `UTC`).
pub fn stopped_at(reason: &str) -> Option<DateTime<Utc>> {
    let inside = reason.split_once('(')?.1.split_once(')')?.0;
    let stamp = inside
        .strip_suffix(" GMT")
        .or_else(|| inside.strip_suffix(" UTC"))?;
    NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

pub(super) fn evaluate(
    inventory: &RegionInventory,
    config: &PostureConfig,
    now: DateTime<Utc>,
    findings: &mut Vec<Finding>,
) {
    for instance in &inventory.instances {
        let state = instance.state.name.as_str();
        if matches!(state, "terminated" | "shutting-down") {
            continue;
        }
        let evidence = json!({
            "instance_id": instance.instance_id,
            "instance_type": instance.instance_type,
            "state": state,
            "launched": instance.launch_time,
            "metadata_options": instance.metadata_options,
            "tags": tags_object(&instance.tags),
        });
        if let Some(options) = &instance.metadata_options {
            let endpoint_on = options.http_endpoint.as_deref() != Some("disabled");
            if endpoint_on && options.http_tokens.as_deref() == Some("optional") {
                findings.push(finding(
                    inventory,
                    FindingKind::ImdsV1Allowed,
                    Severity::High,
                    format!(
                        "Instance {} still answers IMDSv1 metadata requests",
                        instance.instance_id
                    ),
                    &instance.instance_id,
                    None,
                    evidence.clone(),
                ));
            }
        }
        if let Some(suggestion) = current_generation_for(&instance.instance_type) {
            let mut evidence = evidence.clone();
            evidence["suggested_instance_type"] = json!(suggestion);
            findings.push(finding(
                inventory,
                FindingKind::InstancePreviousGeneration,
                Severity::Low,
                format!(
                    "Instance {} runs previous-generation {}; {suggestion} is faster and usually cheaper",
                    instance.instance_id, instance.instance_type
                ),
                &instance.instance_id,
                None,
                evidence,
            ));
        }
        if state == "stopped" {
            let Some(since) = instance
                .state_transition_reason
                .as_deref()
                .and_then(stopped_at)
            else {
                continue;
            };
            let days = (now - since).num_days();
            let attached: Vec<_> = instance
                .block_device_mappings
                .iter()
                .filter_map(|m| m.ebs.as_ref()?.volume_id.as_deref())
                .filter_map(|id| inventory.volumes.iter().find(|v| v.volume_id == id))
                .collect();
            if days < config.stopped_instance_min_days || attached.is_empty() {
                continue;
            }
            let monthly: f64 = attached
                .iter()
                .map(|v| f64::from(v.size) * ebs_usd_per_gib_month(&v.volume_type))
                .sum();
            let mut evidence = evidence;
            evidence["stopped_since"] = json!(since);
            evidence["stopped_days"] = json!(days);
            evidence["volumes"] = json!(attached
                .iter()
                .map(|v| json!({ "volume_id": v.volume_id, "size_gib": v.size, "volume_type": v.volume_type }))
                .collect::<Vec<_>>());
            findings.push(finding(
                inventory,
                FindingKind::InstanceStoppedLong,
                Severity::for_monthly_cost(monthly),
                format!(
                    "Instance {} has been stopped for {days} days with {} volume(s) still billed",
                    instance.instance_id,
                    attached.len()
                ),
                &instance.instance_id,
                Some(monthly),
                evidence,
            ));
        }
    }
    for image in &inventory.images {
        if image.public {
            findings.push(finding(
                inventory,
                FindingKind::AmiPublic,
                Severity::High,
                format!(
                    "AMI {} is public: any AWS account can launch it",
                    image.image_id
                ),
                &image.image_id,
                None,
                json!({
                    "image_id": image.image_id,
                    "name": image.name,
                    "created": image.creation_date,
                    "tags": tags_object(&image.tags),
                }),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::detect::posture::test_support::{empty_inventory, kinds, volume};
    use crate::sources::inventory::{
        EbsBlockDevice, Instance, InstanceBlockDeviceMapping, InstanceState, MetadataOptions,
    };

    fn instance(id: &str, itype: &str, state: &str, tokens: &str) -> Instance {
        Instance {
            instance_id: id.into(),
            instance_type: itype.into(),
            state: InstanceState { name: state.into() },
            launch_time: None,
            public_ip_address: None,
            ipv6_address: None,
            private_ip_address: None,
            security_groups: vec![],
            metadata_options: Some(MetadataOptions {
                http_tokens: Some(tokens.into()),
                http_endpoint: Some("enabled".into()),
            }),
            state_transition_reason: None,
            block_device_mappings: vec![],
            tags: vec![],
        }
    }

    #[test]
    fn previous_generation_types_get_a_suggestion() {
        assert_eq!(
            current_generation_for("m4.large").as_deref(),
            Some("m7i.large")
        );
        assert_eq!(current_generation_for("t2.micro"), None);
        assert_eq!(current_generation_for("m6i.large"), None);
    }

    #[test]
    fn the_stop_time_is_read_from_the_transition_reason() {
        let at = stopped_at("User initiated (2026-01-05 10:12:44 GMT)").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-01-05T10:12:44+00:00");
        assert_eq!(stopped_at("Server.SpotInstanceTermination"), None);
    }

    #[test]
    fn imdsv1_is_flagged_unless_tokens_are_required() {
        let mut inventory = empty_inventory();
        inventory.instances = vec![
            instance("i-1", "m6i.large", "running", "optional"),
            instance("i-2", "m6i.large", "running", "required"),
        ];
        assert_eq!(kinds(&inventory), vec![FindingKind::ImdsV1Allowed]);
    }

    #[test]
    fn a_long_stopped_instance_costs_its_volumes() {
        let mut inventory = empty_inventory();
        let stopped = (Utc::now() - Duration::days(45)).format("%Y-%m-%d %H:%M:%S");
        let mut i = instance("i-1", "m6i.large", "stopped", "required");
        i.state_transition_reason = Some(format!("User initiated ({stopped} GMT)"));
        i.block_device_mappings = vec![InstanceBlockDeviceMapping {
            device_name: Some("/dev/xvda".into()),
            ebs: Some(EbsBlockDevice {
                volume_id: Some("vol-1".into()),
                snapshot_id: None,
            }),
        }];
        inventory.instances = vec![i];
        inventory.volumes = vec![volume("vol-1", 100, "gp2", "in-use")];
        let mut findings = Vec::new();
        evaluate(
            &inventory,
            &PostureConfig::default(),
            Utc::now(),
            &mut findings,
        );
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].kind, FindingKind::InstanceStoppedLong);
        assert_eq!(findings[0].impact_usd_monthly, Some(10.0));
    }
}
