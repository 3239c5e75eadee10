//! Passwords, tokens and the caller's identity.

pub mod oauth2;
pub mod password;
pub mod token;

pub use token::{Claims, HmacSha256, TokenError, TokenKind, Tokens};

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}
