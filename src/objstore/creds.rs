//! Credentials, region and endpoint the AWS way, through the AWS SDK's own
//! chains (`aws-config`), handed to the `object_store` client.
//!
//! `object_store` reads only environment variables, web identity tokens and
//! container or instance roles. The SDK's chain is the one the AWS CLI
//! follows: the environment, the shared `~/.aws/credentials` and
//! `~/.aws/config` files (`AWS_PROFILE`, `role_arn` with `source_profile`,
//! SSO, `credential_process`), web identity (EKS service accounts), the ECS
//! container role and the EC2 instance role, in that order. So pgdrill asks
//! the SDK and keeps the answer until shortly before it expires.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::{ProvideRegion, RegionProviderChain};
use aws_config::profile::ProfileFileRegionProvider;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::provider::ProvideCredentials;
use object_store::aws::AwsCredential;
use tokio::sync::Mutex;

/// Renew a temporary credential this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// The SDK's default credential chain, cached.
pub(crate) struct SdkCredentials {
    chain: DefaultCredentialsChain,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl std::fmt::Debug for SdkCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SdkCredentials")
    }
}

impl SdkCredentials {
    /// The credential in use and when it expires.
    pub(crate) async fn current(&self) -> object_store::Result<(Arc<AwsCredential>, Option<SystemTime>)> {
        let cred = object_store::CredentialProvider::get_credential(self).await?;
        let expiry = self.cached.lock().await.as_ref().and_then(|(_, e)| *e);
        Ok((cred, expiry))
    }

    pub(crate) async fn new(region: &str) -> SdkCredentials {
        let region = aws_config::Region::new(region.to_string());
        let chain = DefaultCredentialsChain::builder().region(region).build().await;
        SdkCredentials { chain, cached: Mutex::new(None) }
    }
}

#[async_trait::async_trait]
impl object_store::CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((cred, expiry)) = cached.as_ref() {
            let fresh =
                expiry.is_none_or(|e| e.duration_since(SystemTime::now()).is_ok_and(|left| left > RENEW_BEFORE));
            if fresh {
                return Ok(Arc::clone(cred));
            }
        }
        let got = self.chain.provide_credentials().await.map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: Box::new(NoCredentials(aws_credential_types::provider::error::CredentialsError::to_string(&e))),
        })?;
        let cred = Arc::new(AwsCredential {
            key_id: got.access_key_id().to_string(),
            secret_key: got.secret_access_key().to_string(),
            token: got.session_token().map(str::to_string),
        });
        *cached = Some((Arc::clone(&cred), got.expiry()));
        Ok(cred)
    }
}

/// No credential could be had from any source of the chain.
#[derive(Debug, thiserror::Error)]
#[error("no AWS credentials: {0}")]
pub(crate) struct NoCredentials(String);

/// The region: the environment (`AWS_REGION`, `AWS_DEFAULT_REGION`), then
/// the profile's `region`; on AWS itself (no custom endpoint) then the
/// instance's own region. A custom endpoint without a region gets
/// `us-east-1`, which S3-compatible stores accept.
pub(crate) async fn region(custom_endpoint: bool) -> String {
    let chain = RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
        .or_else(EnvRegionFallback)
        .or_else(ProfileFileRegionProvider::new());
    let chain = if custom_endpoint { chain } else { chain.or_default_provider() };
    chain.region().await.map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".to_string())
}

/// `AWS_DEFAULT_REGION`, which the AWS CLI reads and the SDK does not.
#[derive(Debug)]
struct EnvRegionFallback;

impl ProvideRegion for EnvRegionFallback {
    fn region(&self) -> aws_config::meta::region::future::ProvideRegion<'_> {
        let r = std::env::var("AWS_DEFAULT_REGION").ok().filter(|s| !s.is_empty()).map(aws_config::Region::new);
        aws_config::meta::region::future::ProvideRegion::ready(r)
    }
}

/// The endpoint from the environment or the profile: `AWS_ENDPOINT_URL_S3`,
/// then `AWS_ENDPOINT_URL`, then the profile's `endpoint_url`.
pub(crate) async fn endpoint() -> Option<String> {
    if let Some(e) = std::env::var("AWS_ENDPOINT_URL_S3").ok().filter(|s| !s.is_empty()) {
        return Some(e);
    }
    aws_config::default_provider::endpoint_url::endpoint_url_provider(&ProviderConfig::default()).await
}
