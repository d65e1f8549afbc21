//! EC2 posture: every `Describe*` the rules need, for each account and
//! region, mapped into the inventory structs the fixtures also fill.
//!
//! Each call is read to the end (paginators where the API pages) and with
//! the filters that keep resources from being hidden by a default (checked
//! against the EC2 API reference, 2026-12):
//! - `DescribeImages`: `Owners=self`, `IncludeDisabled=true` (disabled AMIs
//!   are otherwise omitted, and a snapshot they use would look orphaned),
//!   `IncludeDeprecated=true` (owners see theirs anyway);
//! - `DescribeSnapshots`: `OwnerIds=self` (without it, every public snapshot
//!   on AWS is listed); archived snapshots are included by default;
//! - `DescribeInstances`, `DescribeVolumes`, `DescribeSecurityGroups`: no
//!   filter, paginated (terminated instances drop out after about an hour,
//!   which is what the rules want);
//! - `DescribeAddresses`: not paginated, one answer holds all;
//! - `DescribeRegions`: enabled regions only (a region not opted into holds nothing);
//! - `GetEbsEncryptionByDefault`: a per-region setting, read in each region.

use aws_config::{Region, SdkConfig};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::SnapshotAttributeName;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};

use super::{Session, sdk_error};
use crate::domain::AccountId;
use crate::sources::inventory::{
    Address, CreateVolumePermission, EbsBlockDevice, GroupIdentifier, Image, Instance,
    InstanceBlockDeviceMapping, InstanceState, IpPermission, IpRange, Ipv6Range, MetadataOptions,
    SecurityGroup, Snapshot, Tag, Volume, VolumeAttachment,
};
use crate::sources::{PostureScan, RegionInventory, ScanError};

/// Snapshot attribute calls in flight per region.
const ATTRIBUTE_CONCURRENCY: usize = 8;

pub(super) async fn scan(
    sessions: &[Session],
    configured_regions: &[String],
    concurrency: usize,
) -> PostureScan {
    let mut errors = Vec::new();
    let mut targets = Vec::new();
    for session in sessions {
        match regions(session, configured_regions).await {
            Ok((regions, mut region_errors)) => {
                errors.append(&mut region_errors);
                targets.extend(regions.into_iter().map(|r| (session, r)));
            }
            Err(error) => errors.push(error),
        }
    }
    // Futures are built up front from owned data: stream closures that borrow
    // do not satisfy the `Send` bounds of an `async_trait` method.
    let tasks: Vec<_> = targets
        .into_iter()
        .map(|(session, region)| collect(session.account.clone(), session.sdk.clone(), region))
        .collect();
    let results: Vec<Result<RegionInventory, ScanError>> = stream::iter(tasks)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut inventories = Vec::new();
    for result in results {
        match result {
            Ok(inventory) => inventories.push(inventory),
            Err(error) => errors.push(error),
        }
    }
    inventories.sort_by(|a, b| (&a.account, &a.region).cmp(&(&b.account, &b.region)));
    PostureScan {
        inventories,
        errors,
    }
}

fn client(sdk: &SdkConfig, region: &str) -> Client {
    let config = aws_sdk_ec2::config::Builder::from(sdk)
        .region(Region::new(region.to_owned()))
        .build();
    Client::from_conf(config)
}

/// The regions to scan in one account: the configured ones that the account
/// has enabled (an unknown one is an error of its own), or all enabled ones.
async fn regions(
    session: &Session,
    configured: &[String],
) -> Result<(Vec<String>, Vec<ScanError>), ScanError> {
    let home = session
        .sdk
        .region()
        .map_or("us-east-1", |r| r.as_ref())
        .to_owned();
    let ec2 = client(&session.sdk, &home);
    let enabled = ec2.describe_regions().send().await.map(|out| {
        out.regions()
            .iter()
            .filter_map(|r| r.region_name().map(str::to_owned))
            .collect::<Vec<_>>()
    });
    match (enabled, configured.is_empty()) {
        (Ok(enabled), true) => Ok((enabled, Vec::new())),
        (Ok(enabled), false) => {
            let mut errors = Vec::new();
            let mut regions = Vec::new();
            for region in configured {
                if enabled.contains(region) {
                    regions.push(region.clone());
                } else {
                    errors.push(ScanError {
                        account: Some(session.account.clone()),
                        region: Some(region.clone()),
                        service: "ec2",
                        message: format!("`{region}` is not a region enabled for this account"),
                    });
                }
            }
            Ok((regions, errors))
        }
        // Without DescribeRegions, trust the configured list: each region then fails or not on its own.
        (Err(_), false) => Ok((configured.to_vec(), Vec::new())),
        (Err(e), true) => Err(ScanError {
            account: Some(session.account.clone()),
            region: Some(home),
            service: "ec2",
            message: sdk_error("DescribeRegions", &e),
        }),
    }
}

async fn collect(
    account: AccountId,
    sdk: SdkConfig,
    region: String,
) -> Result<RegionInventory, ScanError> {
    let ec2 = client(&sdk, &region);
    let fail = |message: String| ScanError {
        account: Some(account.clone()),
        region: Some(region.clone()),
        service: "ec2",
        message,
    };
    let security_groups = ec2
        .describe_security_groups()
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| fail(sdk_error("DescribeSecurityGroups", &e)))?;
    let volumes = ec2
        .describe_volumes()
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| fail(sdk_error("DescribeVolumes", &e)))?;
    let snapshots = ec2
        .describe_snapshots()
        .owner_ids("self")
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| fail(sdk_error("DescribeSnapshots", &e)))?;
    // DescribeAddresses has no pagination: one answer holds every address.
    let addresses = ec2
        .describe_addresses()
        .send()
        .await
        .map_err(|e| fail(sdk_error("DescribeAddresses", &e)))?;
    let reservations = ec2
        .describe_instances()
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| fail(sdk_error("DescribeInstances", &e)))?;
    // Disabled AMIs are left out unless asked for (the API's default), yet
    // their snapshots are still in use; deprecated ones are always listed to
    // their owner, asked for anyway so a change of default cannot hide them.
    let images = ec2
        .describe_images()
        .owners("self")
        .include_disabled(true)
        .include_deprecated(true)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| fail(sdk_error("DescribeImages", &e)))?;
    let encryption = ec2
        .get_ebs_encryption_by_default()
        .send()
        .await
        .map_err(|e| fail(sdk_error("GetEbsEncryptionByDefault", &e)))?;

    let lookups: Vec<_> = snapshots
        .iter()
        .filter_map(|s| s.snapshot_id())
        .map(|id| create_volume_permissions(ec2.clone(), id.to_owned()))
        .collect();
    let permissions: Vec<Result<(String, Vec<CreateVolumePermission>), String>> =
        stream::iter(lookups)
            .buffer_unordered(ATTRIBUTE_CONCURRENCY)
            .collect()
            .await;
    let permissions: std::collections::HashMap<String, Vec<CreateVolumePermission>> = permissions
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(fail)?;

    Ok(RegionInventory {
        account: account.clone(),
        region: region.clone(),
        security_groups: security_groups.iter().map(security_group).collect(),
        volumes: volumes.iter().filter_map(volume).collect(),
        snapshots: snapshots
            .iter()
            .filter_map(|s| {
                snapshot(
                    s,
                    permissions
                        .get(s.snapshot_id().unwrap_or_default())
                        .cloned()
                        .unwrap_or_default(),
                )
            })
            .collect(),
        addresses: addresses.addresses().iter().filter_map(address).collect(),
        instances: reservations
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(instance)
            .collect(),
        images: images.iter().filter_map(image).collect(),
        ebs_encryption_by_default: encryption.ebs_encryption_by_default(),
    })
}

async fn create_volume_permissions(
    ec2: Client,
    id: String,
) -> Result<(String, Vec<CreateVolumePermission>), String> {
    let out = ec2
        .describe_snapshot_attribute()
        .snapshot_id(&id)
        .attribute(SnapshotAttributeName::CreateVolumePermission)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeSnapshotAttribute", &e))?;
    let permissions = out
        .create_volume_permissions()
        .iter()
        .map(|p| CreateVolumePermission {
            group: p.group().map(|g| g.as_str().to_owned()),
            user_id: p.user_id().map(str::to_owned),
        })
        .collect();
    Ok((id, permissions))
}

fn time(t: Option<&aws_sdk_ec2::primitives::DateTime>) -> Option<DateTime<Utc>> {
    let t = t?;
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

fn tags(tags: &[aws_sdk_ec2::types::Tag]) -> Vec<Tag> {
    tags.iter()
        .map(|t| Tag {
            key: t.key().unwrap_or_default().to_owned(),
            value: t.value().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// Absent and empty are the same thing: some EC2 implementations send `<instanceId/>`.
fn owned(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_owned)
}

fn security_group(g: &aws_sdk_ec2::types::SecurityGroup) -> SecurityGroup {
    SecurityGroup {
        group_id: g.group_id().unwrap_or_default().to_owned(),
        group_name: g.group_name().unwrap_or_default().to_owned(),
        vpc_id: owned(g.vpc_id()),
        ip_permissions: g
            .ip_permissions()
            .iter()
            .map(|p| IpPermission {
                ip_protocol: p.ip_protocol().unwrap_or("-1").to_owned(),
                from_port: p.from_port(),
                to_port: p.to_port(),
                ip_ranges: p
                    .ip_ranges()
                    .iter()
                    .filter_map(|r| {
                        Some(IpRange {
                            cidr_ip: r.cidr_ip()?.to_owned(),
                            description: owned(r.description()),
                        })
                    })
                    .collect(),
                ipv6_ranges: p
                    .ipv6_ranges()
                    .iter()
                    .filter_map(|r| {
                        Some(Ipv6Range {
                            cidr_ipv6: r.cidr_ipv6()?.to_owned(),
                            description: owned(r.description()),
                        })
                    })
                    .collect(),
            })
            .collect(),
        tags: tags(g.tags()),
    }
}

fn volume(v: &aws_sdk_ec2::types::Volume) -> Option<Volume> {
    Some(Volume {
        volume_id: v.volume_id()?.to_owned(),
        size: u32::try_from(v.size().unwrap_or(0)).unwrap_or(0),
        volume_type: v
            .volume_type()
            .map_or("standard", |t| t.as_str())
            .to_owned(),
        encrypted: v.encrypted().unwrap_or(false),
        state: v.state().map_or("unknown", |s| s.as_str()).to_owned(),
        create_time: time(v.create_time())?,
        availability_zone: owned(v.availability_zone()),
        attachments: v
            .attachments()
            .iter()
            .filter_map(|a| {
                Some(VolumeAttachment {
                    instance_id: a.instance_id()?.to_owned(),
                    device: owned(a.device()),
                    state: a.state().map(|s| s.as_str().to_owned()),
                })
            })
            .collect(),
        tags: tags(v.tags()),
    })
}

fn snapshot(
    s: &aws_sdk_ec2::types::Snapshot,
    permissions: Vec<CreateVolumePermission>,
) -> Option<Snapshot> {
    Some(Snapshot {
        snapshot_id: s.snapshot_id()?.to_owned(),
        volume_id: owned(s.volume_id()),
        volume_size: s.volume_size().and_then(|v| u32::try_from(v).ok()),
        start_time: time(s.start_time())?,
        encrypted: s.encrypted().unwrap_or(false),
        owner_id: owned(s.owner_id()),
        description: owned(s.description()),
        tags: tags(s.tags()),
        create_volume_permissions: permissions,
    })
}

fn address(a: &aws_sdk_ec2::types::Address) -> Option<Address> {
    Some(Address {
        public_ip: a.public_ip()?.to_owned(),
        allocation_id: owned(a.allocation_id()),
        association_id: owned(a.association_id()),
        instance_id: owned(a.instance_id()),
        network_interface_id: owned(a.network_interface_id()),
        domain: a.domain().map(|d| d.as_str().to_owned()),
        tags: tags(a.tags()),
    })
}

fn block_devices(
    mappings: impl Iterator<Item = (Option<String>, Option<String>, Option<String>)>,
) -> Vec<InstanceBlockDeviceMapping> {
    mappings
        .map(
            |(device_name, volume_id, snapshot_id)| InstanceBlockDeviceMapping {
                device_name,
                ebs: (volume_id.is_some() || snapshot_id.is_some()).then_some(EbsBlockDevice {
                    volume_id,
                    snapshot_id,
                }),
            },
        )
        .collect()
}

fn instance(i: &aws_sdk_ec2::types::Instance) -> Option<Instance> {
    Some(Instance {
        instance_id: i.instance_id()?.to_owned(),
        instance_type: i
            .instance_type()
            .map_or("unknown", |t| t.as_str())
            .to_owned(),
        state: InstanceState {
            name: i
                .state()
                .and_then(|s| s.name())
                .map_or("unknown", |n| n.as_str())
                .to_owned(),
        },
        launch_time: time(i.launch_time()),
        public_ip_address: owned(i.public_ip_address()),
        ipv6_address: owned(i.ipv6_address()),
        private_ip_address: owned(i.private_ip_address()),
        security_groups: i
            .security_groups()
            .iter()
            .filter_map(|g| {
                Some(GroupIdentifier {
                    group_id: g.group_id()?.to_owned(),
                    group_name: owned(g.group_name()),
                })
            })
            .collect(),
        metadata_options: i.metadata_options().map(|m| MetadataOptions {
            http_tokens: m.http_tokens().map(|t| t.as_str().to_owned()),
            http_endpoint: m.http_endpoint().map(|e| e.as_str().to_owned()),
        }),
        state_transition_reason: owned(i.state_transition_reason()),
        block_device_mappings: block_devices(i.block_device_mappings().iter().map(|m| {
            (
                owned(m.device_name()),
                m.ebs().and_then(|e| owned(e.volume_id())),
                None,
            )
        })),
        tags: tags(i.tags()),
    })
}

fn image(i: &aws_sdk_ec2::types::Image) -> Option<Image> {
    Some(Image {
        image_id: i.image_id()?.to_owned(),
        name: owned(i.name()),
        public: i.public().unwrap_or(false),
        state: i.state().map(|s| s.as_str().to_owned()),
        creation_date: owned(i.creation_date()),
        block_device_mappings: block_devices(i.block_device_mappings().iter().map(|m| {
            (
                owned(m.device_name()),
                None,
                m.ebs().and_then(|e| owned(e.snapshot_id())),
            )
        })),
        tags: tags(i.tags()),
    })
}
