//! Fake customer records for the `lookup_customer` tool.
//!
//! The record is meant to look like what a real CRM tool would hand an agent:
//! personal data, a payment card and an order history, about 2 KB of JSON.
//! It is derived only from the id, so a test can ask twice (directly and
//! through the interceptor) and compare, or assert on a specific field.

use serde_json::{Value, json};

const FIRST_NAMES: &[&str] = &[
    "Alice", "Bruno", "Chen", "Dalia", "Emeka", "Farah", "Gustav", "Hana", "Ivan", "Jasmine",
    "Kenji", "Leila", "Mateo", "Nora", "Olu", "Priya",
];
const LAST_NAMES: &[&str] = &[
    "Andersen",
    "Okafor",
    "Novak",
    "Haddad",
    "Kowalski",
    "Tanaka",
    "Moreau",
    "Silva",
    "Fischer",
    "Ramirez",
    "Ivanova",
    "Nakamura",
    "O'Brien",
    "Patel",
    "Lindqvist",
    "Mbeki",
];
const STREETS: &[&str] = &[
    "Maple Avenue",
    "Harbor Road",
    "Elm Street",
    "Quarry Lane",
    "Sunset Boulevard",
    "Mill Creek Drive",
    "Station Square",
    "Orchard Way",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Springfield", "IL", "627"),
    ("Portland", "OR", "972"),
    ("Austin", "TX", "787"),
    ("Madison", "WI", "537"),
    ("Raleigh", "NC", "276"),
    ("Boulder", "CO", "803"),
];
/// (sku, description, unit price in cents)
const PRODUCTS: &[(&str, &str, u64)] = &[
    ("SKU-1001", "Stainless steel water bottle, 750 ml", 2499),
    ("SKU-1002", "Wireless ergonomic mouse", 3999),
    ("SKU-1003", "Organic cotton t-shirt, size M", 1850),
    ("SKU-1004", "USB-C charging cable, 2 m", 1299),
    ("SKU-1005", "Noise-cancelling headphones", 18900),
    ("SKU-1006", "Ceramic pour-over coffee set", 4575),
    ("SKU-1007", "Hardcover notebook, dotted", 1595),
    ("SKU-1008", "LED desk lamp with dimmer", 5490),
];
const STATUSES: &[&str] = &["delivered", "delivered", "delivered", "shipped", "refunded"];

/// splitmix64: tiny, good enough spread, and stable across platforms and
/// releases (unlike std's hashers), which is what determinism needs.
struct Rng(u64);

impl Rng {
    fn from_id(id: &str) -> Self {
        // FNV-1a of the id seeds the generator.
        let seed = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        // Slices here are tiny constants, so the casts cannot truncate.
        &items[self.below(items.len() as u64) as usize]
    }

    fn digits(&mut self, count: usize) -> String {
        (0..count)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

/// A 16-digit Visa-style number with a valid Luhn check digit, so that
/// card-number detectors (which usually verify Luhn) recognise it.
fn card_number(rng: &mut Rng) -> String {
    let body = format!("4{}", rng.digits(14));
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, byte)| {
            let digit = u32::from(byte - b'0');
            // Rightmost body digit sits next to the check digit: double it.
            if i % 2 == 0 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// Cents to a JSON number; dividing exact cents keeps the printed value
/// free of binary-fraction noise.
fn money(cents: u64) -> Value {
    json!(cents as f64 / 100.0)
}

fn order(rng: &mut Rng, index: usize) -> Value {
    let mut total = 0;
    let items: Vec<Value> = (0..1 + rng.below(2))
        .map(|_| {
            let (sku, description, price) = *rng.pick(PRODUCTS);
            let quantity = 1 + rng.below(3);
            total += price * quantity;
            json!({
                "sku": sku,
                "description": description,
                "quantity": quantity,
                "unit_price": money(price),
            })
        })
        .collect();
    json!({
        "order_id": format!("ORD-{}", rng.digits(8)),
        "date": format!("2024-{:02}-{:02}", 1 + index * 2, 1 + rng.below(28)),
        "status": rng.pick(STATUSES),
        "items": items,
        "total": money(total),
        "currency": "USD",
    })
}

/// The customer record for `id`, as pretty-printed JSON.
pub fn record(id: &str) -> String {
    let record = value(id);
    // A json! value always serialises; fall back to compact form regardless
    // rather than panic in a test peer.
    serde_json::to_string_pretty(&record).unwrap_or_else(|_| record.to_string())
}

/// Upper bound on `records`' size: past the bench's largest result, well
/// under the agent's default `max_message`.
pub const MAX_SIZED: usize = 4 << 20;

/// `{"customers":[...]}`, compact, of about `bytes` bytes and never more
/// (at least one record, cut to its first orders when even one full record
/// is larger): records of ids `<id>-0`, `<id>-1`, ...
pub fn records(id: &str, bytes: usize) -> String {
    let (open, close) = ("{\"customers\":[", "]}");
    let mut out = String::with_capacity(bytes + 64);
    out.push_str(open);
    for i in 0.. {
        let mut record = value(&format!("{id}-{i}"));
        let mut text = record.to_string();
        while i == 0 && out.len() + text.len() + close.len() > bytes {
            // The first record shrinks (orders, last first) rather than
            // the answer growing past `bytes`.
            let Some(orders) = record["orders"].as_array_mut().filter(|o| !o.is_empty()) else {
                break;
            };
            orders.pop();
            text = record.to_string();
        }
        if i > 0 && out.len() + 1 + text.len() + close.len() > bytes {
            break;
        }
        if i > 0 {
            out.push(',');
        }
        out.push_str(&text);
    }
    out.push_str(close);
    out
}

/// The customer record for `id`.
pub fn value(id: &str) -> Value {
    let mut rng = Rng::from_id(id);
    let first = rng.pick(FIRST_NAMES);
    let last = rng.pick(LAST_NAMES);
    let name = format!("{first} {last}");
    let email_user = format!("{first}.{last}").to_lowercase().replace('\'', "");
    let (city, state, zip_prefix) = *rng.pick(CITIES);
    let street_number = 10 + rng.below(9000);
    let street = rng.pick(STREETS);
    let card = card_number(&mut rng);
    let expiry = format!("{:02}/{}", 1 + rng.below(12), 27 + rng.below(4));
    let orders: Vec<Value> = (0..4).map(|index| order(&mut rng, index)).collect();
    let lifetime_value: f64 = orders
        .iter()
        .filter_map(|order| order["total"].as_f64())
        .sum();

    json!({
        "customer_id": id,
        "name": name,
        "email": format!("{email_user}@example.com"),
        "phone": format!("+1-555-{}-{}", rng.digits(3), rng.digits(4)),
        "date_of_birth": format!("19{}-{:02}-{:02}", 60 + rng.below(40), 1 + rng.below(12), 1 + rng.below(28)),
        "address": {
            "street": format!("{street_number} {street}"),
            "city": city,
            "state": state,
            "postal_code": format!("{zip_prefix}{}", rng.digits(2)),
            "country": "US",
        },
        "payment_card": {
            "brand": "VISA",
            "number": card,
            "expiry": expiry,
            "cardholder": name.to_uppercase(),
        },
        "loyalty_tier": rng.pick(&["bronze", "silver", "gold", "platinum"]),
        "marketing_opt_in": rng.below(2) == 1,
        "lifetime_value": (lifetime_value * 100.0).round() / 100.0,
        "orders": orders,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sized answers are JSON of about the size asked for, never more,
    /// and the same for the same id.
    #[test]
    fn sized_records_fit_the_size_asked_for() {
        for bytes in [1024, 64 << 10, 1 << 20] {
            let text = records("c-1", bytes);
            assert!(text.len() <= bytes, "{} > {bytes}", text.len());
            // Within one record (under 2 KB compact) of the size, or half of 1 KB.
            assert!(
                text.len() + 2048_usize.min(bytes / 2) >= bytes,
                "{} for {bytes}",
                text.len()
            );
            let v: Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(v["customers"][0]["customer_id"], "c-1-0");
            assert_eq!(text, records("c-1", bytes));
        }
    }
}
