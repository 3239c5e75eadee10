//! The two S3 forms of the settings page: `s3` (where uploaded files go)
//! and `backups.s3` (stored and testable; backups stay on the local disk),
//! each with its "Test S3" button (`core::settings::test_s3`, what
//! `POST /api/settings/test/s3` runs).
//!
//! The secret is write-only, as the SMTP password: never part of the model
//! that renders, and an empty field keeps the stored one.

use serde_json::{json, Map, Value};

use super::errors::{checked, obj, one_line, Errors};
use crate::admin::AdminForm;
use crate::settings::{S3Settings, Settings};

/// Which bucket a form edits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// `s3`: uploaded files.
    Storage,
    /// `backups.s3`.
    Backups,
}

impl Bucket {
    /// The settings key, also the prefix of the form's field names.
    pub fn key(self) -> &'static str {
        match self {
            Bucket::Storage => "s3",
            Bucket::Backups => "backups.s3",
        }
    }

    /// The `filesystem` value of the test.
    pub fn filesystem(self) -> &'static str {
        match self {
            Bucket::Storage => "storage",
            Bucket::Backups => "backups",
        }
    }

    pub fn from_filesystem(name: &str) -> Option<Bucket> {
        match name {
            "storage" => Some(Bucket::Storage),
            "backups" => Some(Bucket::Backups),
            _ => None,
        }
    }

    fn section(self, s: &Settings) -> &S3Settings {
        match self {
            Bucket::Storage => &s.s3,
            Bucket::Backups => &s.backups.s3,
        }
    }
}

/// The bucket name of the saved settings (for the test's message).
pub fn bucket_name(s: &Settings, bucket: Bucket) -> String {
    bucket.section(s).bucket.clone()
}

pub struct S3Form {
    pub bucket: Bucket,
    pub enabled: bool,
    pub name: String,
    pub region: String,
    pub endpoint: String,
    pub access_key: String,
    pub force_path_style: bool,
    /// Whether a secret is stored (shown as a hint, never the secret).
    pub has_secret: bool,
    /// A new secret typed into the form (kept for the patch, not shown).
    secret: String,
}

impl S3Form {
    pub fn from_settings(s: &Settings, bucket: Bucket) -> S3Form {
        let section = bucket.section(s);
        S3Form {
            bucket,
            enabled: section.enabled,
            name: section.bucket.clone(),
            region: section.region.clone(),
            endpoint: section.endpoint.clone(),
            access_key: section.access_key.clone(),
            force_path_style: section.force_path_style,
            has_secret: !section.secret.is_empty(),
            secret: String::new(),
        }
    }

    pub fn from_form(f: &AdminForm, current: &Settings, bucket: Bucket) -> S3Form {
        let k = |field: &str| format!("{}.{field}", bucket.key());
        S3Form {
            bucket,
            enabled: checked(f, &k("enabled")),
            name: f.text(&k("bucket")).trim().to_owned(),
            region: f.text(&k("region")).trim().to_owned(),
            endpoint: f.text(&k("endpoint")).trim().to_owned(),
            access_key: f.text(&k("accessKey")).trim().to_owned(),
            force_path_style: checked(f, &k("forcePathStyle")),
            has_secret: !bucket.section(current).secret.is_empty(),
            secret: f.text(&k("secret")).to_owned(),
        }
    }

    /// Where the form saves.
    pub fn action(&self) -> &'static str {
        match self.bucket {
            Bucket::Storage => "/_/settings/s3",
            Bucket::Backups => "/_/settings/backups-s3",
        }
    }

    /// The section's anchor and heading.
    pub fn anchor(&self) -> &'static str {
        match self.bucket {
            Bucket::Storage => "s3",
            Bucket::Backups => "backups-s3",
        }
    }

    pub fn title(&self) -> &'static str {
        match self.bucket {
            Bucket::Storage => "File storage (S3)",
            Bucket::Backups => "Backups bucket (S3)",
        }
    }

    /// The `filesystem` the test button sends.
    pub fn filesystem(&self) -> &'static str {
        self.bucket.filesystem()
    }

    /// Whether this is the files' bucket (the page's hints differ).
    pub fn is_storage(&self) -> bool {
        self.bucket == Bucket::Storage
    }

    /// The name of the form field `field` (`s3.bucket`).
    pub fn field(&self, field: &str) -> String {
        format!("{}.{field}", self.bucket.key())
    }

    pub fn patch(&self) -> Result<Map<String, Value>, Errors> {
        let mut errors = Errors::default();
        for (field, value) in [
            ("bucket", &self.name),
            ("region", &self.region),
            ("endpoint", &self.endpoint),
            ("accessKey", &self.access_key),
        ] {
            one_line(&mut errors, &self.field(field), value);
        }
        let mut section = json!({
            "enabled": self.enabled,
            "bucket": self.name,
            "region": self.region,
            "endpoint": self.endpoint,
            "accessKey": self.access_key,
            "forcePathStyle": self.force_path_style,
        });
        if !self.secret.is_empty() {
            section["secret"] = json!(self.secret);
        }
        let patch = match self.bucket {
            Bucket::Storage => json!({ "s3": section }),
            Bucket::Backups => json!({ "backups": { "s3": section } }),
        };
        errors.into_result(obj(patch))
    }
}
