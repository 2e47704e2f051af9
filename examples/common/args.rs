//! A tiny `--name value` / `--name=value` / `--flag` parser, enough for the bench tools.

use std::str::FromStr;

/// The process arguments.
#[derive(Debug)]
pub struct Args(Vec<String>);

impl Args {
    /// `std::env::args()` without the program name; prints `usage` and exits on `--help`.
    pub fn from_env(usage: &str) -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.iter().any(|a| a == "--help" || a == "-h") {
            println!("{usage}");
            std::process::exit(0);
        }
        Self(args)
    }

    /// The value of `--name`, or `default`; exits with a message if it does not parse.
    pub fn value<T: FromStr>(&self, name: &str, default: T) -> T {
        let flag = format!("--{name}");
        let prefix = format!("--{name}=");
        let mut found = None;
        for (i, a) in self.0.iter().enumerate() {
            if *a == flag {
                found = self.0.get(i + 1).cloned();
            } else if let Some(v) = a.strip_prefix(&prefix) {
                found = Some(v.to_string());
            }
        }
        match found {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("bad value for --{name}: {v:?}");
                std::process::exit(2)
            }),
        }
    }

    /// Whether `--name` is present.
    pub fn flag(&self, name: &str) -> bool {
        let flag = format!("--{name}");
        self.0.contains(&flag)
    }
}
