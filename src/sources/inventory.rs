//! EC2 inventory in the shape the EC2 API returns it (PascalCase JSON), so the
//! fixtures are real `Describe*` responses and the AWS source can fill the same
//! structs. Only the fields the posture rules read are modelled; unknown
//! fields are ignored, as the AWS SDKs do.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::AccountId;

/// Everything the posture rules look at for one account in one region.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionInventory {
    pub account: AccountId,
    pub region: String,
    pub security_groups: Vec<SecurityGroup>,
    pub volumes: Vec<Volume>,
    pub snapshots: Vec<Snapshot>,
    pub addresses: Vec<Address>,
    pub instances: Vec<Instance>,
    /// AMIs owned by the account.
    pub images: Vec<Image>,
    /// `GetEbsEncryptionByDefault`; `None` when it was not read.
    pub ebs_encryption_by_default: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecurityGroup {
    pub group_id: String,
    #[serde(default)]
    pub group_name: String,
    #[serde(default)]
    pub vpc_id: Option<String>,
    #[serde(default)]
    pub ip_permissions: Vec<IpPermission>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpPermission {
    /// `tcp`, `udp`, `icmp`, a protocol number, or `-1` for all.
    pub ip_protocol: String,
    #[serde(default)]
    pub from_port: Option<i32>,
    #[serde(default)]
    pub to_port: Option<i32>,
    #[serde(default)]
    pub ip_ranges: Vec<IpRange>,
    #[serde(default)]
    pub ipv6_ranges: Vec<Ipv6Range>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpRange {
    pub cidr_ip: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipv6Range {
    pub cidr_ipv6: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub volume_id: String,
    /// GiB.
    pub size: u32,
    pub volume_type: String,
    pub encrypted: bool,
    /// `available` (unattached), `in-use`, `creating`, …
    pub state: String,
    pub create_time: DateTime<Utc>,
    #[serde(default)]
    pub availability_zone: Option<String>,
    #[serde(default)]
    pub attachments: Vec<VolumeAttachment>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeAttachment {
    pub instance_id: String,
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Snapshot {
    pub snapshot_id: String,
    #[serde(default)]
    pub volume_id: Option<String>,
    #[serde(default)]
    pub volume_size: Option<u32>,
    pub start_time: DateTime<Utc>,
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default)]
    pub owner_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// From `DescribeSnapshotAttribute(createVolumePermission)`, which is a
    /// separate call in the API; the fixtures and the AWS source merge it here.
    #[serde(default)]
    pub create_volume_permissions: Vec<CreateVolumePermission>,
}

impl Snapshot {
    /// `Group: all` in the create-volume permissions means anyone on AWS can copy it.
    pub fn is_public(&self) -> bool {
        self.create_volume_permissions
            .iter()
            .any(|p| p.group.as_deref() == Some("all"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateVolumePermission {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Address {
    pub public_ip: String,
    #[serde(default)]
    pub allocation_id: Option<String>,
    #[serde(default)]
    pub association_id: Option<String>,
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub network_interface_id: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Reservation {
    #[serde(default)]
    pub instances: Vec<Instance>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Instance {
    pub instance_id: String,
    pub instance_type: String,
    pub state: InstanceState,
    #[serde(default)]
    pub launch_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub public_ip_address: Option<String>,
    /// The primary IPv6 address; VPC IPv6 addresses are globally routable.
    #[serde(default)]
    pub ipv6_address: Option<String>,
    #[serde(default)]
    pub private_ip_address: Option<String>,
    #[serde(default)]
    pub security_groups: Vec<GroupIdentifier>,
    #[serde(default)]
    pub metadata_options: Option<MetadataOptions>,
    /// e.g. `User initiated (2026-01-05 10:12:44 GMT)`: the only place the API says when an instance stopped.
    #[serde(default)]
    pub state_transition_reason: Option<String>,
    #[serde(default)]
    pub block_device_mappings: Vec<InstanceBlockDeviceMapping>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceBlockDeviceMapping {
    #[serde(default)]
    pub device_name: Option<String>,
    #[serde(default)]
    pub ebs: Option<EbsBlockDevice>,
}

/// The EBS part of a block device mapping, for instances (`VolumeId`) and images (`SnapshotId`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EbsBlockDevice {
    #[serde(default)]
    pub volume_id: Option<String>,
    #[serde(default)]
    pub snapshot_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Image {
    pub image_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub public: bool,
    /// `available`, `disabled`, `pending`, `failed`, … (a disabled AMI still holds its snapshots).
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub creation_date: Option<String>,
    #[serde(default)]
    pub block_device_mappings: Vec<InstanceBlockDeviceMapping>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceState {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GroupIdentifier {
    pub group_id: String,
    #[serde(default)]
    pub group_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetadataOptions {
    /// `required` means IMDSv2 only; `optional` still allows IMDSv1.
    #[serde(default)]
    pub http_tokens: Option<String>,
    /// `disabled` turns the metadata service off entirely.
    #[serde(default)]
    pub http_endpoint: Option<String>,
}
