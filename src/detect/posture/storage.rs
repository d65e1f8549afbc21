//! EBS: unencrypted and forgotten volumes, encryption-by-default, public and
//! orphaned snapshots.

use std::collections::HashSet;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use regex::Regex;
use serde_json::json;

use super::{
    PostureConfig, SNAPSHOT_USD_PER_GIB_MONTH, ebs_usd_per_gib_month, finding, tags_object,
};
use crate::domain::{Finding, FindingKind, Severity};
use crate::sources::RegionInventory;
use crate::sources::inventory::Snapshot;

pub(super) fn evaluate(
    inventory: &RegionInventory,
    config: &PostureConfig,
    now: DateTime<Utc>,
    findings: &mut Vec<Finding>,
) {
    if inventory.ebs_encryption_by_default == Some(false) {
        findings.push(finding(
            inventory,
            FindingKind::EbsDefaultEncryptionOff,
            Severity::Medium,
            format!("EBS encryption by default is off in {}", inventory.region),
            "ebs-encryption-by-default",
            None,
            json!({ "region": inventory.region, "ebs_encryption_by_default": false }),
        ));
    }
    for volume in &inventory.volumes {
        let evidence = json!({
            "volume_id": volume.volume_id,
            "size_gib": volume.size,
            "volume_type": volume.volume_type,
            "state": volume.state,
            "encrypted": volume.encrypted,
            "created": volume.create_time,
            "availability_zone": volume.availability_zone,
            "attached_to": volume.attachments.iter().map(|a| &a.instance_id).collect::<Vec<_>>(),
            "tags": tags_object(&volume.tags),
        });
        if !volume.encrypted {
            findings.push(finding(
                inventory,
                FindingKind::EbsUnencrypted,
                Severity::Medium,
                format!(
                    "EBS volume {} ({} GiB {}) is not encrypted",
                    volume.volume_id, volume.size, volume.volume_type
                ),
                &volume.volume_id,
                None,
                evidence.clone(),
            ));
        }
        let age_days = (now - volume.create_time).num_days();
        if volume.state == "available" && age_days >= config.unattached_volume_min_age_days {
            let price = ebs_usd_per_gib_month(&volume.volume_type);
            let monthly = f64::from(volume.size) * price;
            let mut evidence = evidence;
            evidence["age_days"] = json!(age_days);
            evidence["usd_per_gib_month"] = json!(price);
            findings.push(finding(
                inventory,
                FindingKind::EbsUnattached,
                Severity::for_monthly_cost(monthly),
                format!(
                    "EBS volume {} ({} GiB {}) has been unattached for {age_days} days",
                    volume.volume_id, volume.size, volume.volume_type
                ),
                &volume.volume_id,
                Some(monthly),
                evidence,
            ));
        }
    }

    let volumes: HashSet<&str> = inventory
        .volumes
        .iter()
        .map(|v| v.volume_id.as_str())
        .collect();
    // A snapshot behind a registered AMI (in any state: a disabled one still
    // needs it, and AWS refuses to delete it) is in use even when its volume is gone.
    let used_by_images: HashSet<&str> = inventory
        .images
        .iter()
        .flat_map(|i| &i.block_device_mappings)
        .filter_map(|m| m.ebs.as_ref()?.snapshot_id.as_deref())
        .collect();
    let images_seen: HashSet<&str> = inventory
        .images
        .iter()
        .map(|i| i.image_id.as_str())
        .collect();
    for snapshot in &inventory.snapshots {
        let evidence = json!({
            "snapshot_id": snapshot.snapshot_id,
            "volume_id": snapshot.volume_id,
            "volume_size_gib": snapshot.volume_size,
            "encrypted": snapshot.encrypted,
            "owner_id": snapshot.owner_id,
            "started": snapshot.start_time,
            "description": snapshot.description,
            "create_volume_permissions": snapshot.create_volume_permissions,
            "tags": tags_object(&snapshot.tags),
        });
        if snapshot.is_public() {
            findings.push(finding(
                inventory,
                FindingKind::SnapshotPublic,
                Severity::Critical,
                format!(
                    "EBS snapshot {} can be copied by any AWS account",
                    snapshot.snapshot_id
                ),
                &snapshot.snapshot_id,
                None,
                evidence.clone(),
            ));
        }
        // `vol-ffffffff` marks copied snapshots, which have no source volume in this account.
        let source_gone = snapshot
            .volume_id
            .as_deref()
            .is_none_or(|v| !volumes.contains(v));
        let age_days = (now - snapshot.start_time).num_days();
        // The description may say which AMI the snapshot was made for
        // ("Created by CreateImage(i-…) for ami-… from vol-…", "Copied for
        // DestinationAmi ami-… from SourceAmi ami-…"): if the scan did not see
        // that AMI, it may well exist (disabled, shared from elsewhere), so the
        // snapshot is not called unused on the absence of evidence.
        let names_unseen_ami = snapshot
            .description
            .as_deref()
            .is_some_and(|d| amis_named(d).any(|ami| !images_seen.contains(ami)));
        if source_gone
            && !used_by_images.contains(snapshot.snapshot_id.as_str())
            && !names_unseen_ami
            && lifecycle_manager(snapshot).is_none()
            && age_days >= config.orphaned_snapshot_min_age_days
        {
            let size = snapshot.volume_size.unwrap_or(0);
            let monthly = f64::from(size) * SNAPSHOT_USD_PER_GIB_MONTH;
            let mut evidence = evidence;
            evidence["age_days"] = json!(age_days);
            findings.push(finding(
                inventory,
                FindingKind::SnapshotOrphaned,
                Severity::for_monthly_cost(monthly),
                format!(
                    "EBS snapshot {} ({size} GiB) outlived its volume {} by up to {age_days} days",
                    snapshot.snapshot_id,
                    snapshot.volume_id.as_deref().unwrap_or("(unknown)")
                ),
                &snapshot.snapshot_id,
                Some(monthly),
                evidence,
            ));
        }
    }
}

/// The service that keeps this snapshot on a retention schedule, if the
/// snapshot says so. Such a snapshot is a recovery point, not a leftover: the
/// service deletes it when its retention ends, and AWS Backup's cannot even be
/// deleted through EC2. Marks, as the services write them: AWS Backup tags
/// `aws:backup:*` and the description "This snapshot is created by the AWS
/// Backup service."; Data Lifecycle Manager tags `dlm:managed` and
/// `aws:dlm:*` and the description "Created for policy: policy-… schedule: …".
fn lifecycle_manager(snapshot: &Snapshot) -> Option<&'static str> {
    let description = snapshot.description.as_deref().unwrap_or_default();
    let tagged = |prefix: &str| snapshot.tags.iter().any(|t| t.key.starts_with(prefix));
    if tagged("aws:backup:")
        || description
            .to_ascii_lowercase()
            .contains("created by the aws backup service")
    {
        Some("AWS Backup")
    } else if tagged("aws:dlm:")
        || tagged("dlm:managed")
        || description.starts_with("Created for policy: policy-")
    {
        Some("Data Lifecycle Manager")
    } else {
        None
    }
}

/// AMI ids (`ami-` and 8 or 17 hex digits) mentioned in a text.
fn amis_named(text: &str) -> impl Iterator<Item = &str> {
    static AMI_ID: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\bami-(?:[0-9a-f]{17}|[0-9a-f]{8})\b")
            .expect("the AMI id pattern is a valid regex")
    });
    AMI_ID.find_iter(text).map(|m| m.as_str())
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::detect::posture::test_support::{empty_inventory, kinds, volume};
    use crate::sources::inventory::{EbsBlockDevice, Image, InstanceBlockDeviceMapping, Tag};

    fn snapshot(id: &str, volume: &str, age_days: i64) -> Snapshot {
        Snapshot {
            snapshot_id: id.into(),
            volume_id: Some(volume.into()),
            volume_size: Some(100),
            start_time: Utc::now() - Duration::days(age_days),
            encrypted: true,
            owner_id: None,
            description: None,
            tags: vec![],
            create_volume_permissions: vec![],
        }
    }

    #[test]
    fn a_snapshot_whose_volume_is_gone_is_orphaned_once_old_enough() {
        let mut inventory = empty_inventory();
        inventory.snapshots = vec![
            snapshot("snap-old", "vol-gone", 90),
            snapshot("snap-new", "vol-gone", 3),
        ];
        let mut findings = Vec::new();
        evaluate(
            &inventory,
            &PostureConfig::default(),
            Utc::now(),
            &mut findings,
        );
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].resource, "snap-old");
        assert_eq!(findings[0].impact_usd_monthly, Some(5.0));
    }

    #[test]
    fn a_snapshot_behind_an_ami_or_a_live_volume_is_not_orphaned() {
        let mut inventory = empty_inventory();
        inventory.volumes = vec![volume("vol-live", 8, "gp3", "in-use")];
        inventory.snapshots = vec![
            snapshot("snap-a", "vol-live", 90),
            snapshot("snap-b", "vol-ffffffff", 90),
        ];
        inventory.images = vec![Image {
            image_id: "ami-1".into(),
            name: None,
            public: false,
            state: None,
            creation_date: None,
            block_device_mappings: vec![InstanceBlockDeviceMapping {
                device_name: None,
                ebs: Some(EbsBlockDevice {
                    volume_id: None,
                    snapshot_id: Some("snap-b".into()),
                }),
            }],
            tags: vec![],
        }];
        assert!(kinds(&inventory).is_empty());
    }

    #[test]
    fn a_snapshot_naming_an_ami_the_scan_did_not_see_is_not_orphaned() {
        let mut inventory = empty_inventory();
        let mut made_for_ami = snapshot("snap-a", "vol-gone", 90);
        made_for_ami.description = Some(
            "Created by CreateImage(i-0a0000000000012aa) for ami-0a0000000000012aa from vol-0a0000000000012aa".into(),
        );
        let mut copied = snapshot("snap-b", "vol-ffffffff", 90);
        copied.description = Some(
            "Copied for DestinationAmi ami-0123456789abcdef0 from SourceAmi ami-12345678 for SourceSnapshot snap-0123456789abcdef0. Task created on 1,700,000,000,000.".into(),
        );
        let mut plain = snapshot("snap-c", "vol-gone", 90);
        plain.description = Some("nightly backup of the family-photos volume".into());
        inventory.snapshots = vec![made_for_ami, copied, plain];
        let findings: Vec<String> = {
            let mut findings = Vec::new();
            evaluate(
                &inventory,
                &PostureConfig::default(),
                Utc::now(),
                &mut findings,
            );
            findings.into_iter().map(|f| f.resource).collect()
        };
        assert_eq!(findings, vec!["snap-c"]);
    }

    #[test]
    fn a_snapshot_whose_named_ami_was_seen_and_does_not_use_it_can_be_orphaned() {
        let mut inventory = empty_inventory();
        let mut s = snapshot("snap-a", "vol-gone", 90);
        s.description =
            Some("Created by CreateImage(i-1) for ami-0a0000000000012aa from vol-gone".into());
        inventory.snapshots = vec![s];
        inventory.images = vec![Image {
            image_id: "ami-0a0000000000012aa".into(),
            name: None,
            public: false,
            state: Some("disabled".into()),
            creation_date: None,
            block_device_mappings: vec![],
            tags: vec![],
        }];
        assert_eq!(kinds(&inventory), vec![FindingKind::SnapshotOrphaned]);
        inventory.images[0].block_device_mappings = vec![InstanceBlockDeviceMapping {
            device_name: None,
            ebs: Some(EbsBlockDevice {
                volume_id: None,
                snapshot_id: Some("snap-a".into()),
            }),
        }];
        assert!(
            kinds(&inventory).is_empty(),
            "a disabled AMI still uses its snapshot"
        );
    }

    #[test]
    fn a_recovery_point_of_aws_backup_or_dlm_is_not_orphaned() {
        let mut inventory = empty_inventory();
        let mut backup = snapshot("snap-backup", "vol-gone", 400);
        backup.description = Some("This snapshot is created by the AWS Backup service.".into());
        let mut backup_tagged = snapshot("snap-backup-tag", "vol-gone", 400);
        backup_tagged.tags = vec![Tag {
            key: "aws:backup:source-resource".into(),
            value: "vol-gone".into(),
        }];
        let mut dlm = snapshot("snap-dlm", "vol-gone", 400);
        dlm.description =
            Some("Created for policy: policy-0123456789abcdef0 schedule: Daily".into());
        let mut dlm_tagged = snapshot("snap-dlm-tag", "vol-gone", 400);
        dlm_tagged.tags = vec![Tag {
            key: "dlm:managed".into(),
            value: "true".into(),
        }];
        inventory.snapshots = vec![backup, backup_tagged, dlm, dlm_tagged];
        assert!(kinds(&inventory).is_empty());
    }

    #[test]
    fn default_encryption_off_is_reported_and_unknown_is_not() {
        let mut inventory = empty_inventory();
        assert!(kinds(&inventory).is_empty());
        inventory.ebs_encryption_by_default = Some(false);
        assert_eq!(
            kinds(&inventory),
            vec![FindingKind::EbsDefaultEncryptionOff]
        );
    }
}
