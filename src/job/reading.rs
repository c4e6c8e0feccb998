//! What reading a spec file uses in every part of it: the problems found so far (each
//! with its file), paths shown relative to the project, time zones by IANA name.

use super::SpecError;
use chrono_tz::Tz;
use std::path::Path;

/// The problems found in one spec file so far.
pub(super) struct Problems {
    file: String,
    found: Vec<SpecError>,
}

impl Problems {
    pub(super) fn of(file: String) -> Problems {
        Problems {
            file,
            found: Vec::new(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub(super) fn into_found(self) -> Vec<SpecError> {
        self.found
    }

    pub(super) fn add(&mut self, message: String) {
        self.found.push(SpecError {
            file: self.file.clone(),
            message,
        });
    }
}

pub(super) fn relative(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

pub(super) fn parse_tz(s: &str) -> Result<Tz, String> {
    s.parse::<Tz>().map_err(|_| {
        format!(
            "unknown time zone `{}`; use an IANA name such as UTC or Europe/Berlin",
            s.escape_debug()
        )
    })
}
