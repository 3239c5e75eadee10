//! Passwords, tokens and the caller's identity.

pub mod password;
pub mod token;

pub use token::{Claims, TokenError, TokenKind, Tokens};
