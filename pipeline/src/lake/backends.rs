//! Object-storage backends of the lake: S3 (`s3://`, `s3a://`), Azure Blob / ADLS Gen2
//! (`az://`, `azure://`, `abfs://`, `abfss://`) and Google Cloud Storage (`gs://`).
//!
//! delta-rs finds a table's store through a registry keyed by URL scheme; this module
//! registers one factory per cloud scheme that builds the `object_store` client the way each
//! cloud's users expect: credentials from the environment (`AWS_*` variables or an AWS
//! profile; `AZURE_STORAGE_ACCOUNT_KEY`, a SAS, a service principal, workload identity or
//! managed identity; `GOOGLE_APPLICATION_CREDENTIALS`), then the lake's storage options
//! (`--storage-option`, `govlake.toml`) on top. DataFusion reads through the very store
//! delta-rs wrote with (the table hands it to the session), so there is one client per table.

use std::collections::HashMap;
use std::sync::{Arc, Once};

use deltalake::logstore::object_store::{
    self, ObjectStore, aws::AmazonS3Builder, azure::MicrosoftAzureBuilder,
    gcp::GoogleCloudStorageBuilder, path::Path,
};
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError};
use url::Url;

/// The cloud a URL scheme names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    /// Amazon S3 and S3-compatible stores (MinIO, moto, Ceph …).
    S3,
    /// Azure Blob Storage and ADLS Gen2.
    Azure,
    /// Google Cloud Storage.
    Gcs,
}

impl Cloud {
    /// The cloud behind a URL scheme, `None` for local and in-memory schemes.
    pub fn of_scheme(scheme: &str) -> Option<Self> {
        match scheme {
            "s3" | "s3a" => Some(Self::S3),
            "az" | "azure" | "abfs" | "abfss" | "adl" => Some(Self::Azure),
            "gs" => Some(Self::Gcs),
            _ => None,
        }
    }

    /// Schemes served by this module.
    const SCHEMES: [&'static str; 8] = ["s3", "s3a", "az", "azure", "abfs", "abfss", "adl", "gs"];

    /// Option keys that carry secrets: they come from the environment only, never from the
    /// command line (visible in `ps`) or a config file (checked into repositories).
    pub fn is_secret_option(key: &str) -> bool {
        let k = key.to_ascii_lowercase();
        [
            "secret",
            "account_key",
            "access_key",
            "sas",
            "token",
            "password",
            "service_account_key",
        ]
        .iter()
        .any(|s| k.contains(s))
    }
}

/// Registers the cloud factories with delta-rs (once per process), and, while a test's crash
/// point is armed, the log store that passes it for local lakes too.
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let stores = object_store_factories();
        let logs = logstore_factories();
        for scheme in Cloud::SCHEMES {
            let url = Url::parse(&format!("{scheme}://")).expect("scheme URLs parse");
            stores.insert(url.clone(), Arc::new(CloudStoreFactory));
            logs.insert(url, Arc::new(LogStores));
        }
        if super::failpoint::armed() {
            let url = Url::parse("file://").expect("scheme URLs parse");
            logs.insert(url, Arc::new(LogStores));
        }
    });
}

/// Builds the store for a cloud URL: the root of the bucket/container plus the path in it.
pub fn build(url: &Url, options: &HashMap<String, String>) -> DeltaResult<(ObjectStoreRef, Path)> {
    let cloud = Cloud::of_scheme(url.scheme())
        .ok_or_else(|| DeltaTableError::InvalidTableLocation(url.to_string()))?;
    let bad_option = |key: &str| {
        DeltaTableError::Generic(format!(
            "`{key}` is not a storage option of {cloud:?} (see the README's storage table)"
        ))
    };
    let store: Arc<dyn ObjectStore> = match cloud {
        Cloud::S3 => {
            let mut b = with_aws_profile(AmazonS3Builder::from_env()).with_url(url.as_str());
            for (k, v) in options {
                let key = k.to_ascii_lowercase().parse().map_err(|_| bad_option(k))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build()?)
        }
        Cloud::Azure => {
            let mut b = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
            for (k, v) in options {
                let key = k.to_ascii_lowercase().parse().map_err(|_| bad_option(k))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build()?)
        }
        Cloud::Gcs => {
            let mut b = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
            for (k, v) in options {
                let key = k.to_ascii_lowercase().parse().map_err(|_| bad_option(k))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build()?)
        }
    };
    let path = object_store::path::Path::from_url_path(path_in_container(url))
        .map_err(|e| DeltaTableError::Generic(format!("bad path in `{url}`: {e}")))?;
    Ok((store, path))
}

/// The object path inside the bucket or container named by the URL. For
/// `abfss://container@account.dfs.core.windows.net/p` and `s3://bucket/p` alike it is `p`:
/// the authority names the bucket (and account), the URL path is the path.
fn path_in_container(url: &Url) -> &str {
    url.path()
}

/// Fills static credentials and the region from an AWS profile (`AWS_PROFILE`, else
/// `default`, in `~/.aws/credentials` and `~/.aws/config`) when the environment carries no
/// access key, the way the AWS CLI does for plain key profiles. SSO and role-chaining
/// profiles are not resolved: export their credentials (`aws configure export-credentials`).
fn with_aws_profile(builder: AmazonS3Builder) -> AmazonS3Builder {
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        return builder;
    }
    let Some(home) = std::env::var_os("HOME") else {
        return builder;
    };
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let aws = std::path::Path::new(&home).join(".aws");
    let credentials_file = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(Into::into)
        .unwrap_or_else(|| aws.join("credentials"));
    let config_file = std::env::var_os("AWS_CONFIG_FILE")
        .map(Into::into)
        .unwrap_or_else(|| aws.join("config"));
    let mut values = HashMap::new();
    let config_section = if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    };
    values.extend(profile_section(&config_file, &config_section));
    values.extend(profile_section(&credentials_file, &profile));
    let mut b = builder;
    if let (Some(id), Some(secret)) = (
        values.get("aws_access_key_id"),
        values.get("aws_secret_access_key"),
    ) {
        b = b.with_access_key_id(id).with_secret_access_key(secret);
        if let Some(token) = values.get("aws_session_token") {
            b = b.with_token(token);
        }
    }
    if std::env::var_os("AWS_REGION").is_none()
        && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        && let Some(region) = values.get("region")
    {
        b = b.with_region(region);
    }
    if let Some(endpoint) = values.get("endpoint_url")
        && std::env::var_os("AWS_ENDPOINT_URL").is_none()
        && std::env::var_os("AWS_ENDPOINT").is_none()
    {
        b = b.with_endpoint(endpoint);
    }
    b
}

/// The `key = value` pairs (keys lowercased) of one `[section]` of an AWS INI file; none
/// when the file is absent, and none with a warning naming the file when it is not INI.
fn profile_section(path: &std::path::Path, section: &str) -> HashMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    match ini_section(&text, section) {
        Ok(values) => values,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "The AWS profile file is not valid INI; its profiles are not used (fix it, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).");
            HashMap::new()
        }
    }
}

/// The `key = value` pairs of one `[section]` of INI text, read the way the AWS CLI reads
/// its files: `#` and `;` comment lines, values taken as written (no quotes or escapes: a
/// secret may hold any character), an indented line continuing the value above it (a
/// nested `s3 =` block stays under its key).
fn ini_section(text: &str, section: &str) -> Result<HashMap<String, String>, ini::ParseError> {
    let options = ini::ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        enabled_indented_mutiline_value: true,
        enabled_preserve_key_leading_whitespace: false,
    };
    let file = ini::Ini::load_from_str_opt(text, options)?;
    Ok(file
        .section(Some(section))
        .map(|props| {
            props
                .iter()
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect()
        })
        .unwrap_or_default())
}

#[derive(Debug)]
struct CloudStoreFactory;

impl ObjectStoreFactory for CloudStoreFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        build(url, &config.raw)
    }
}

/// delta-rs' default log store, over stores that pass the tests' crash points while one is
/// armed (`failpoint`).
#[derive(Debug)]
struct LogStores;

impl LogStoreFactory for LogStores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        // Every backend here has an atomic create (`If-None-Match: *` on S3 and Azure,
        // `ifGenerationMatch=0` on GCS), which is all the default log store needs to commit
        // safely; no DynamoDB lock table.
        Ok(default_logstore(
            super::failpoint::FailpointStore::wrap(prefixed_store),
            super::failpoint::FailpointStore::wrap(root_store),
            location,
            options,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_ini_section() {
        let text = "[default]\naws_access_key_id = A\n[profile audit]\nregion = eu-west-1\n# c\n; c\nAWS_Access_Key_ID=B\naws_secret_access_key = x\\y\"z'\n";
        assert_eq!(
            ini_section(text, "default").unwrap()["aws_access_key_id"],
            "A"
        );
        let audit = ini_section(text, "profile audit").unwrap();
        assert_eq!(audit["aws_access_key_id"], "B");
        assert_eq!(audit["region"], "eu-west-1");
        // A secret is taken as written: no escapes, no quotes.
        assert_eq!(audit["aws_secret_access_key"], "x\\y\"z'");
        assert_eq!(audit.len(), 3);
        assert!(ini_section(text, "missing").unwrap().is_empty());
    }

    #[test]
    fn a_nested_block_stays_under_its_key() {
        let text = "[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n  endpoint_url = http://x\nendpoint_url = http://y\n";
        let d = ini_section(text, "default").unwrap();
        assert_eq!(d["endpoint_url"], "http://y");
        assert_eq!(d["region"], "us-east-1");
        assert!(!d.contains_key("addressing_style"), "{d:?}");
    }

    #[test]
    fn secret_options_are_recognised() {
        assert!(Cloud::is_secret_option("azure_storage_account_key"));
        assert!(Cloud::is_secret_option("AWS_SECRET_ACCESS_KEY"));
        assert!(Cloud::is_secret_option("azure_storage_sas_key"));
        assert!(!Cloud::is_secret_option("aws_endpoint"));
        assert!(!Cloud::is_secret_option("allow_http"));
    }

    #[test]
    fn schemes_map_to_clouds() {
        assert_eq!(Cloud::of_scheme("abfss"), Some(Cloud::Azure));
        assert_eq!(Cloud::of_scheme("s3a"), Some(Cloud::S3));
        assert_eq!(Cloud::of_scheme("gs"), Some(Cloud::Gcs));
        assert_eq!(Cloud::of_scheme("file"), None);
    }
}
