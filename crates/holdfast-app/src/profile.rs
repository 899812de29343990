//! Application profiles: what holdfast knows about an application out of the box.
//!
//! A profile turns "this is a DSS data directory" into the procedure its vendor documents:
//! how to stop, start and query the service, where the version is, which folders are
//! temporary, logs, exports or rebuildable, and what a restore elsewhere must be followed by.
//! Every value can be overridden in the configuration; the generic profile knows nothing and
//! takes everything from it. What a configured application makes of its profile is in
//! [`crate::resolved`].

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileName {
    Dss,
    #[default]
    Generic,
}

impl ProfileName {
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileName::Dss => "dss",
            ProfileName::Generic => "generic",
        }
    }
}

/// A named group of top-level folders of the data directory that can be left out.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Tier {
    pub name: &'static str,
    pub folders: &'static [&'static str],
    /// Left out unless `exclude_tiers` says otherwise.
    pub excluded_by_default: bool,
    /// What leaving it out means for a restore.
    pub note: &'static str,
}

#[derive(Clone, Debug)]
pub struct Profile {
    pub name: ProfileName,
    pub tiers: &'static [Tier],
    pub stop: Option<&'static str>,
    pub start: Option<&'static str>,
    pub status: Option<&'static str>,
    pub version_file: Option<&'static str>,
    pub version_key: &'static str,
    /// Said after a restore onto another machine, location or version.
    pub relocation_notes: &'static [&'static str],
}

const DSS_TIERS: &[Tier] = &[
    Tier {
        name: "temporary",
        folders: &["tmp", "caches", "data-catalog"],
        excluded_by_default: true,
        note: "temporary data and caches; DSS rebuilds them",
    },
    Tier {
        name: "logs",
        folders: &["run", "jobs", "scenarios", "diagnosis"],
        excluded_by_default: false,
        note: "logs of the backend, jobs and scenarios are not restored",
    },
    Tier {
        name: "exports",
        folders: &["exports", "prepared_bundles", "apinode-packages"],
        excluded_by_default: false,
        note: "user exports, exported automation bundles and API node packages are not restored",
    },
    Tier {
        name: "rebuildable",
        folders: &["managed_datasets", "analysis_data", "saved_models"],
        excluded_by_default: false,
        note: "managed datasets, analysis data and saved models are not restored: flows must be \
rebuilt and models retrained before they can be used, and data that cannot be recomputed is lost",
    },
];

const DSS: Profile = Profile {
    name: ProfileName::Dss,
    tiers: DSS_TIERS,
    stop: Some("{data_dir}/bin/dss stop"),
    start: Some("{data_dir}/bin/dss start"),
    status: Some("{data_dir}/bin/dss status"),
    version_file: Some("dss-version.json"),
    version_key: "product_version",
    relocation_notes: &[
        "replay the DSS installer in upgrade mode to reattach the data directory: \
<dss-install-dir>/installer.sh -d <data_dir> -u (set post_restore_command to have holdfast run it)",
        "the data directory moved to another machine or location: rebuild the Python code \
environments (see DSS's \"Migrating the data directory\")",
    ],
};

const GENERIC: Profile = Profile {
    name: ProfileName::Generic,
    tiers: &[],
    stop: None,
    start: None,
    status: None,
    version_file: None,
    version_key: "version",
    relocation_notes: &[],
};

impl Profile {
    pub fn get(name: ProfileName) -> &'static Profile {
        match name {
            ProfileName::Dss => &DSS,
            ProfileName::Generic => &GENERIC,
        }
    }

    pub fn tier(&self, name: &str) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.name == name)
    }
}

/// Compares dotted versions numerically where both parts are numbers ("13.10" > "13.9").
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| -> Vec<String> {
        s.split(['.', '-', '_'])
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (pa, pb) = (parts(a), parts(b));
    for i in 0..pa.len().max(pb.len()) {
        let x = pa.get(i).map(String::as_str).unwrap_or("0");
        let y = pb.get(i).map(String::as_str).unwrap_or("0");
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            _ => x.cmp(y),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    std::cmp::Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("13.10.0", "13.9.2"), Greater);
        assert_eq!(compare_versions("13.2", "13.2.0"), Equal);
        assert_eq!(compare_versions("12.6.4", "13.0.0"), Less);
    }
}
