//! The channels approvers are reached on: SMS through Twilio and mail
//! through SMTP or SendGrid. Each module is the provider's wire format and
//! nothing else; what a message says, and what a reply decides, is
//! `notify`'s and `approve`'s.

pub mod email;
pub mod twilio;
