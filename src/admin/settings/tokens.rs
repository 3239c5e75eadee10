//! Token durations of an auth collection (saved in its `authOptions`).

use super::errors::{number, whole, Errors};
use crate::admin::AdminForm;
use crate::schema::collection::AuthOptions;

/// One duration input of an auth collection.
pub struct DurationField {
    /// The auth option's name (`authTokenDuration`), also the input's name.
    pub name: &'static str,
    pub label: &'static str,
    pub value: String,
    /// "7 days" for the value, when it is a number.
    pub human: String,
}

/// An auth collection's token durations (saved in its `authOptions`).
pub struct TokenForm {
    pub collection: String,
    pub fields: Vec<DurationField>,
}

const DURATIONS: [(&str, &str); 4] = [
    ("authTokenDuration", "Auth token"),
    ("verificationTokenDuration", "Verification token"),
    ("passwordResetTokenDuration", "Password reset token"),
    ("emailChangeTokenDuration", "Email change token"),
];

fn option_value(o: &AuthOptions, name: &str) -> u64 {
    match name {
        "authTokenDuration" => o.auth_token_duration,
        "verificationTokenDuration" => o.verification_token_duration,
        "passwordResetTokenDuration" => o.password_reset_token_duration,
        _ => o.email_change_token_duration,
    }
}

impl TokenForm {
    pub fn from_options(collection: &str, o: &AuthOptions) -> TokenForm {
        TokenForm::build(collection, |name| option_value(o, name).to_string())
    }

    pub fn from_form(collection: &str, f: &AdminForm) -> TokenForm {
        TokenForm::build(collection, |name| f.text(name).trim().to_owned())
    }

    fn build(collection: &str, value: impl Fn(&str) -> String) -> TokenForm {
        TokenForm {
            collection: collection.to_owned(),
            fields: DURATIONS
                .iter()
                .map(|&(name, label)| {
                    let value = value(name);
                    DurationField {
                        name,
                        label,
                        human: whole(&value).map(human_duration).unwrap_or_default(),
                        value,
                    }
                })
                .collect(),
        }
    }

    /// The error key of one of this form's fields.
    pub fn key(&self, name: &str) -> String {
        format!("tokens.{}.{name}", self.collection)
    }

    /// `current` with the durations from the form (everything else kept:
    /// `authOptions` is replaced as a whole by a collection update).
    pub fn apply(&self, current: &AuthOptions) -> Result<AuthOptions, Errors> {
        let mut errors = Errors::default();
        let mut o = current.clone();
        for f in &self.fields {
            // Ten years: far beyond any sensible token life, and far from
            // overflowing an expiry timestamp.
            let n = number(
                &mut errors,
                &self.key(f.name),
                &f.value,
                1,
                10 * 365 * 86_400,
                "Must be a whole number of seconds, at least 1.",
            );
            match f.name {
                "authTokenDuration" => o.auth_token_duration = n,
                "verificationTokenDuration" => o.verification_token_duration = n,
                "passwordResetTokenDuration" => o.password_reset_token_duration = n,
                _ => o.email_change_token_duration = n,
            }
        }
        errors.into_result(o)
    }
}

/// Seconds as people say them: "7 days", "30 minutes", "1 hour 30 minutes".
pub fn human_duration(secs: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "day"), (3_600, "hour"), (60, "minute"), (1, "second")];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (size, name) in UNITS {
        let n = rest / size;
        if n > 0 && parts.len() < 2 {
            parts.push(format!("{n} {name}{}", if n == 1 { "" } else { "s" }));
            rest -= n * size;
        } else if !parts.is_empty() {
            // Two units at most, and only adjacent ones: "1 day 5 seconds"
            // reads oddly, "about 1 day" would be wrong.
            break;
        }
    }
    match (parts.is_empty(), rest) {
        (true, _) => "0 seconds".to_owned(),
        (false, 0) => parts.join(" "),
        (false, _) => format!("about {}", parts.join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_say_them() {
        assert_eq!(human_duration(7 * 86_400), "7 days");
        assert_eq!(human_duration(1800), "30 minutes");
        assert_eq!(human_duration(5400), "1 hour 30 minutes");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(86_405), "about 1 day");
    }
}
