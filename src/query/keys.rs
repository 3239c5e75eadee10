//! PLACEHOLDER, replaced by the query engine's order-preserving encoding.
use serde_json::Value;

/// Appends an order-preserving, self-delimiting encoding of `v`.
pub fn encode_value(out: &mut Vec<u8>, v: &Value, desc: bool) {
    let start = out.len();
    match v {
        Value::Null => out.push(1),
        Value::Bool(false) => out.push(2),
        Value::Bool(true) => out.push(3),
        Value::Number(n) => {
            out.push(4);
            let f = n.as_f64().unwrap_or(0.0);
            let f = if f == 0.0 { 0.0 } else { f };
            let bits = f.to_bits();
            let bits = if f.is_sign_negative() {
                !bits
            } else {
                bits ^ (1 << 63)
            };
            out.extend_from_slice(&bits.to_be_bytes());
        }
        other => {
            out.push(5);
            let s = match other {
                Value::String(s) => s.clone(),
                o => o.to_string(),
            };
            for b in s.bytes() {
                if b == 0 {
                    out.extend_from_slice(&[0, 0xff]);
                } else {
                    out.push(b);
                }
            }
            out.extend_from_slice(&[0, 0]);
        }
    }
    if desc {
        for b in &mut out[start..] {
            *b = !*b;
        }
    }
}
