//! Deterministic shop data of any size, in the schema of `sample-data/` and of the benchmark:
//! `OUT/orders/dt=YYYY-MM-DD/orders.csv`, `OUT/customers.csv`, and the customer system's
//! daily export of its changes, `OUT/customer_changes/dt=YYYY-MM-DD/changes.csv` (every
//! customer inserted on the first day; then updates, deletes, re-inserts, and some changes
//! that arrive a day late).
//!
//! ```text
//! cargo run --release --example gen_orders -- --days 365 --rows-per-day 20000 --out /tmp/shop
//! ```
//! `--corrupt` leaves the handful of broken rows that `sample-data/` carries (a bad number, a
//! missing field, bad timestamps), for the bad-row handling to meet. The same arguments
//! always write the same bytes.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

const REGIONS: &[&str] = &[
    "north", "south", "east", "west", "central", "apac", "emea", "latam",
];
const CATEGORIES: &[&str] = &[
    "books",
    "electronics",
    "garden",
    "grocery",
    "home",
    "kitchen",
    "music",
    "outdoor",
    "pets",
    "sports",
    "toys",
    "wellness",
];
const SEGMENTS: &[&str] = &[
    "consumer",
    "consumer",
    "consumer",
    "small_business",
    "enterprise",
];
const COUNTRIES: &[&str] = &["DE", "FR", "US", "GB", "JP", "BR", "IN", "AU", "CA", "ES"];
const FIRST: &[&str] = &[
    "Ada", "Ben", "Chloe", "Dev", "Elif", "Femi", "Grace", "Hiro", "Ines", "Jonas", "Kofi", "Lea",
    "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
];
const LAST: &[&str] = &[
    "Almeida", "Brandt", "Chen", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito",
    "Jensen", "Kowalski", "Lopez", "Moreau", "Nakamura", "Okafor", "Petrov",
];

/// splitmix64: a fixed, portable hash, so every machine writes the same data.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn h(row: u64, field: u64) -> u64 {
    mix(row.wrapping_mul(16).wrapping_add(field))
}

struct Args {
    days: u64,
    rows_per_day: u64,
    customers: u64,
    start: (i32, u32, u32),
    out: PathBuf,
    corrupt: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: gen_orders --out DIR [--days N] [--rows-per-day M] [--customers K] [--start YYYY-MM-DD] [--corrupt]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        days: 31,
        rows_per_day: 200,
        customers: 500,
        start: (2024, 1, 1),
        out: PathBuf::new(),
        corrupt: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--days" => a.days = value().parse().unwrap_or_else(|_| usage()),
            "--rows-per-day" => a.rows_per_day = value().parse().unwrap_or_else(|_| usage()),
            "--customers" => a.customers = value().parse().unwrap_or_else(|_| usage()),
            "--out" => a.out = PathBuf::from(value()),
            "--corrupt" => a.corrupt = true,
            "--start" => {
                let v = value();
                let p: Vec<&str> = v.split('-').collect();
                if p.len() != 3 {
                    usage()
                }
                a.start = (
                    p[0].parse().unwrap_or_else(|_| usage()),
                    p[1].parse().unwrap_or_else(|_| usage()),
                    p[2].parse().unwrap_or_else(|_| usage()),
                );
            }
            _ => usage(),
        }
    }
    if a.out.as_os_str().is_empty() || a.customers == 0 {
        usage()
    }
    a
}

/// Days since 1970-01-01 for a civil date, and back (Howard Hinnant's algorithms), so the
/// generator needs nothing beyond the standard library.
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y } as i64;
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((if m <= 2 { y + 1 } else { y }) as i32, m, d)
}

fn main() -> std::io::Result<()> {
    let a = parse_args();
    std::fs::create_dir_all(&a.out)?;

    let mut customers = String::from("customer_id,name,country,segment,signup_date\n");
    let day0 = days_from_civil(a.start.0, a.start.1, a.start.2);
    for c in 0..a.customers {
        let (y, m, d) = civil_from_days(day0 - 30 - (h(c, 9) % 1500) as i64);
        let _ = writeln!(
            customers,
            "{c},{} {},{},{},{y:04}-{m:02}-{d:02}",
            FIRST[(h(c, 10) % FIRST.len() as u64) as usize],
            LAST[(h(c, 11) % LAST.len() as u64) as usize],
            COUNTRIES[(h(c, 12) % COUNTRIES.len() as u64) as usize],
            SEGMENTS[(h(c, 13) % SEGMENTS.len() as u64) as usize],
        );
    }
    std::fs::write(a.out.join("customers.csv"), customers)?;

    customer_changes(&a, day0)?;

    for i in 0..a.days {
        let (y, m, d) = civil_from_days(day0 + i as i64);
        let dir = a.out.join(format!("orders/dt={y:04}-{m:02}-{d:02}"));
        std::fs::create_dir_all(&dir)?;
        let mut rows: Vec<(u64, String)> = (0..a.rows_per_day)
            .map(|r| {
                let id = i * a.rows_per_day + r;
                let micros = h(id, 1) % 86_400_000_000;
                let secs = micros / 1_000_000;
                let (hh, mm, ss, us) = (secs / 3600, secs / 60 % 60, secs % 60, micros % 1_000_000);
                let status = match h(id, 7) % 10 {
                    8 => "refunded",
                    9 => "cancelled",
                    _ => "paid",
                };
                let line = format!(
                    "{id},{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}.{us:06},{},{},{},{},{}.{:02},{status}",
                    h(id, 2) % a.customers,
                    REGIONS[(h(id, 3) % REGIONS.len() as u64) as usize],
                    CATEGORIES[(h(id, 4) % CATEGORIES.len() as u64) as usize],
                    1 + h(id, 5) % 5,
                    1 + h(id, 6) % 100,
                    h(id, 8) % 100,
                );
                (micros, line)
            })
            .collect();
        rows.sort();
        let mut lines: Vec<String> = rows.into_iter().map(|(_, l)| l).collect();
        if a.corrupt {
            corrupt(i, &mut lines);
        }
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("orders.csv"))?);
        writeln!(
            f,
            "order_id,order_ts,customer_id,region,category,quantity,unit_price,status"
        )?;
        for l in lines {
            writeln!(f, "{l}")?;
        }
        f.flush()?;
    }
    Ok(())
}

/// The customer system's export of a day's changes: every customer on the first day, then
/// about one in 25 changed a day (a new segment, country or email, an email removed), one
/// in ten of those deleted or inserted again, and one in eight of them late: exported with
/// the next day's changes, older than they are.
fn customer_changes(a: &Args, day0: i64) -> std::io::Result<()> {
    let mut days: Vec<Vec<(u64, String)>> = vec![Vec::new(); a.days as usize + 1];
    let line = |c: u64, v: u64, at: u64, op: &str| {
        let (y, m, d) = civil_from_days(day0 + (at / 86_400) as i64);
        let secs = at % 86_400;
        let email = match h(v, 24) % 12 {
            0 => String::new(),
            1 => format!(
                "{}.{c}@mail.example",
                FIRST[(h(c, 10) % FIRST.len() as u64) as usize].to_lowercase()
            ),
            _ => format!("customer{c}@example.com"),
        };
        format!(
            "{c},{} {},{},{},{email},{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02},{op}",
            FIRST[(h(c, 10) % FIRST.len() as u64) as usize],
            LAST[(h(c, 11) % LAST.len() as u64) as usize],
            COUNTRIES[(h(v, 12) % COUNTRIES.len() as u64) as usize],
            SEGMENTS[(h(v, 13) % SEGMENTS.len() as u64) as usize],
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
        )
    };
    for c in 0..a.customers {
        // The first export: each customer as it is, at its own second of the first hour.
        let at = c % 3600;
        days[0].push((at, line(c, c, at, "I")));
    }
    let per_day = (a.customers / 25).max(4);
    for i in 1..a.days {
        for j in 0..per_day {
            let id = 1_000_000 + i * per_day + j;
            let c = h(id, 20) % a.customers;
            let op = match h(id, 21) % 10 {
                0 => "D",
                1 => "I",
                _ => "U",
            };
            let at = i * 86_400 + 3600 + h(id, 22) % 79_200;
            let late = h(id, 23).is_multiple_of(8);
            let into = (i + u64::from(late)).min(a.days - 1) as usize;
            days[into].push((at, line(c, id, at, op)));
        }
    }
    for (i, rows) in days.iter_mut().enumerate().take(a.days as usize) {
        rows.sort();
        let (y, m, d) = civil_from_days(day0 + i as i64);
        let dir = a
            .out
            .join(format!("customer_changes/dt={y:04}-{m:02}-{d:02}"));
        std::fs::create_dir_all(&dir)?;
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("changes.csv"))?);
        writeln!(f, "customer_id,name,country,segment,email,updated_at,op")?;
        for (_, l) in rows.iter() {
            writeln!(f, "{l}")?;
        }
        f.flush()?;
    }
    Ok(())
}

/// The broken rows an export really produces, on fixed days at fixed places.
fn corrupt(day: u64, lines: &mut [String]) {
    let mut edit = |row: usize, f: &dyn Fn(&mut Vec<String>)| {
        if let Some(l) = lines.get_mut(row) {
            let mut fields: Vec<String> = l.split(',').map(str::to_string).collect();
            f(&mut fields);
            *l = fields.join(",");
        }
    };
    match day {
        // a bad number: quantity spelled out
        6 => edit(41, &|f| f[5] = "two".into()),
        // a missing field: the status column never made it
        11 => edit(17, &|f| {
            f.pop();
        }),
        // a bad timestamp: hour 25
        18 => edit(88, &|f| f[1] = format!("{} 25:61:00", &f[1][..10])),
        // a bad number: a price with a currency sign
        22 => edit(5, &|f| f[6] = format!("${}", f[6])),
        // a bad timestamp: not a date at all
        27 => edit(120, &|f| f[1] = "yesterday".into()),
        _ => {}
    }
}
