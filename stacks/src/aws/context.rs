//! The AWS context of one command: the SDK configuration from aws-config's
//! default chain (profiles, `AWS_REGION`, `AWS_ENDPOINT_URL`, ...), one
//! client per service created on first use, the retry policy, the call log
//! every client reports to, and the account facts (account id, default VPC
//! and its subnets, executor AMI per architecture) looked up once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use tokio::sync::OnceCell;

use super::error::{AwsError, Result, Subject};
use crate::arch::Architecture;

/// Attempts per call (first try included): standard mode backs off
/// exponentially with jitter on throttling, 5xx and transport errors, so a
/// few more than the default 3 ride out a throttled account.
pub const MAX_ATTEMPTS: u32 = 8;
/// Longest back-off between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// Counts the API operations every client sends (once per operation, not
/// per retry attempt), by `Service.Operation`. Reads are `Describe*`,
/// `List*`, `Get*` and `BatchGet*`; everything else is a write.
#[derive(Debug, Clone, Default)]
pub struct CallLog {
    inner: Arc<CallLogInner>,
}

#[derive(Debug, Default)]
struct CallLogInner {
    reads: AtomicU64,
    writes: AtomicU64,
    by_operation: Mutex<BTreeMap<String, u64>>,
}

/// A snapshot of a [`CallLog`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CallCounts {
    /// Read operations.
    pub reads: u64,
    /// Write operations.
    pub writes: u64,
    /// Every operation, `Service.Operation` → count.
    pub by_operation: BTreeMap<String, u64>,
}

impl CallCounts {
    /// The write operations and their counts.
    pub fn write_operations(&self) -> BTreeMap<&str, u64> {
        self.by_operation
            .iter()
            .filter(|(op, _)| !is_read(op.rsplit('.').next().unwrap_or(op)))
            .map(|(op, n)| (op.as_str(), *n))
            .collect()
    }
}

/// Whether an operation name only reads.
pub fn is_read(operation: &str) -> bool {
    ["Describe", "List", "Get", "BatchGet"]
        .iter()
        .any(|p| operation.starts_with(p))
}

impl CallLog {
    fn record(&self, service: &str, operation: &str) {
        let counter = if is_read(operation) {
            &self.inner.reads
        } else {
            &self.inner.writes
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut map = self
            .inner
            .by_operation
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *map.entry(format!("{service}.{operation}")).or_default() += 1;
    }

    /// The counts so far.
    pub fn snapshot(&self) -> CallCounts {
        CallCounts {
            reads: self.inner.reads.load(Ordering::Relaxed),
            writes: self.inner.writes.load(Ordering::Relaxed),
            by_operation: self
                .inner
                .by_operation
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "stackctl-call-log"
    }

    // Serialization happens once per operation (before the retry loop),
    // and by then the operation's metadata is in the config bag (it is not
    // yet when client interceptors see `read_before_execution`).
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            self.record(meta.service(), meta.name());
        }
        Ok(())
    }
}

/// Whether AWS credentials are available: configured
/// ([`credentials_configured`]), or an EC2 instance profile (a CI runner on
/// EC2) served by the instance metadata service, asked once with a
/// one-second timeout unless `AWS_EC2_METADATA_DISABLED=true` says there is
/// none. Commands refuse to touch AWS without them, and `plan` reads live
/// state only with them.
pub async fn credentials_available() -> bool {
    use aws_credential_types::provider::ProvideCredentials as _;
    if credentials_configured() {
        return true;
    }
    let client = aws_config::imds::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(1))
        .read_timeout(std::time::Duration::from_secs(1))
        .max_attempts(1)
        .build();
    aws_config::imds::credentials::ImdsCredentialsProvider::builder()
        .imds_client(client)
        .build()
        .provide_credentials()
        .await
        .is_ok()
}

/// Whether AWS credentials are configured, judged without any network
/// call: credential or profile variables, a web-identity or container
/// credentials source, or a shared config/credentials file.
pub fn credentials_configured() -> bool {
    const VARS: &[&str] = &[
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ];
    if VARS
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
    {
        return true;
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let file = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(std::path::PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(default)))
            .is_some_and(|p| p.is_file())
    };
    file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials")
        || file("AWS_CONFIG_FILE", ".aws/config")
}

/// Facts about the account and region, looked up once per command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// Region.
    pub region: String,
    /// Account id.
    pub account: String,
    /// Default VPC id.
    pub vpc_id: String,
    /// Default VPC IPv4 CIDR.
    pub vpc_cidr: String,
    /// The default VPC's default subnets (one per availability zone), sorted.
    pub subnets: Vec<String>,
}

macro_rules! clients {
    ($($field:ident: $krate:ident),* $(,)?) => {
        #[derive(Default)]
        struct Clients {
            $($field: OnceLock<$krate::Client>,)*
        }

        impl Aws {
            $(
                #[doc = concat!("The `", stringify!($krate), "` client (created on first use).")]
                pub fn $field(&self) -> &$krate::Client {
                    self.inner.clients.$field.get_or_init(|| {
                        $krate::Client::from_conf(
                            $krate::config::Builder::from(&self.inner.config)
                                .interceptor(self.inner.calls.clone())
                                .build(),
                        )
                    })
                }
            )*
        }
    };
}

clients! {
    sts: aws_sdk_sts,
    ec2: aws_sdk_ec2,
    iam: aws_sdk_iam,
    ssm: aws_sdk_ssm,
    sqs: aws_sdk_sqs,
    logs: aws_sdk_cloudwatchlogs,
    ecr: aws_sdk_ecr,
    ecs: aws_sdk_ecs,
    elasticache: aws_sdk_elasticache,
    memorydb: aws_sdk_memorydb,
    autoscaling: aws_sdk_autoscaling,
    appscaling: aws_sdk_applicationautoscaling,
    cloudmap: aws_sdk_servicediscovery,
    elbv2: aws_sdk_elasticloadbalancingv2,
    cloudwatch: aws_sdk_cloudwatch,
    apigateway: aws_sdk_apigateway,
    sns: aws_sdk_sns,
    pricing: aws_sdk_pricing,
}

struct Inner {
    config: SdkConfig,
    calls: CallLog,
    clients: Clients,
    env: OnceCell<Env>,
    /// x86_64, arm64.
    amis: [OnceCell<String>; 2],
}

/// The AWS context of one command; cheap to clone (shared).
#[derive(Clone)]
pub struct Aws {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Aws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aws")
            .field("region", &self.inner.config.region())
            .finish_non_exhaustive()
    }
}

impl Aws {
    /// Loads the configuration from aws-config's default chain; `region`
    /// (the spec's) wins over the environment's and the profile's.
    pub async fn load(region: Option<&str>) -> Result<Self> {
        Self::load_with(aws_config::defaults(BehaviorVersion::latest()), region).await
    }

    /// [`Aws::load`] from a prepared loader (tests point one at an
    /// endpoint with fixed credentials, without touching the process
    /// environment); the retry policy and `region` are applied on top.
    pub async fn load_with(loader: aws_config::ConfigLoader, region: Option<&str>) -> Result<Self> {
        let mut loader = loader.retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_max_backoff(MAX_BACKOFF),
        );
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region.to_string()));
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(AwsError::Config(
                "no region: set `region:` in the spec, AWS_REGION, or a profile's region".into(),
            ));
        }
        Ok(Self::from_config(config))
    }

    /// A context for one endpoint with fixed credentials (tests against an
    /// emulator, a proxy in front of it), without touching the process
    /// environment.
    pub async fn with_endpoint(
        endpoint: &str,
        region: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Result<Self> {
        let loader = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                access_key_id,
                secret_access_key,
                None,
                None,
                "stackctl-static",
            ));
        Self::load_with(loader, Some(region)).await
    }

    /// A context over an existing configuration.
    pub fn from_config(config: SdkConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                calls: CallLog::default(),
                clients: Clients::default(),
                env: OnceCell::new(),
                amis: [OnceCell::new(), OnceCell::new()],
            }),
        }
    }

    /// The region.
    pub fn region(&self) -> &str {
        self.inner
            .config
            .region()
            .map(|r| r.as_ref())
            .unwrap_or("us-east-1")
    }

    /// The operations sent so far.
    pub fn calls(&self) -> CallCounts {
        self.inner.calls.snapshot()
    }

    /// Account id, default VPC and subnets (looked up on first use).
    pub async fn env(&self) -> Result<&Env> {
        self.inner.env.get_or_try_init(|| self.lookup_env()).await
    }

    /// The executor AMI for `architecture` from its public SSM parameter
    /// (looked up on first use).
    pub async fn ami(&self, architecture: Architecture) -> Result<&str> {
        let slot = match architecture {
            Architecture::X86_64 => &self.inner.amis[0],
            Architecture::Arm64 => &self.inner.amis[1],
        };
        slot.get_or_try_init(|| async {
            let parameter = architecture.ami_parameter();
            let subject = Subject::other("ami", parameter);
            let out = self
                .ssm()
                .get_parameter()
                .name(parameter)
                .send()
                .await
                .map_err(|e| AwsError::api(subject.clone(), "GetParameter", e))?;
            out.parameter
                .and_then(|p| p.value)
                .ok_or(AwsError::Incomplete {
                    subject,
                    action: "GetParameter",
                    missing: "Parameter.Value",
                })
        })
        .await
        .map(String::as_str)
    }

    async fn lookup_env(&self) -> Result<Env> {
        let account_subject = Subject::other("account", "");
        let identity = self
            .sts()
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| AwsError::api(account_subject.clone(), "GetCallerIdentity", e))?;
        let account = identity.account.ok_or(AwsError::Incomplete {
            subject: account_subject,
            action: "GetCallerIdentity",
            missing: "Account",
        })?;
        let region = self.region().to_string();
        let vpc_subject = Subject::other("default VPC", "");
        let vpcs = self
            .ec2()
            .describe_vpcs()
            .filters(filter("is-default", "true"))
            .send()
            .await
            .map_err(|e| AwsError::api(vpc_subject.clone(), "DescribeVpcs", e))?;
        let vpc = vpcs
            .vpcs
            .unwrap_or_default()
            .into_iter()
            .next()
            .ok_or_else(|| AwsError::NoDefaultVpc {
                region: region.clone(),
                detail: "no VPC has is-default=true".into(),
            })?;
        let vpc_id = vpc.vpc_id.unwrap_or_default();
        let vpc_cidr = vpc.cidr_block.unwrap_or_default();
        let subnets = self
            .ec2()
            .describe_subnets()
            .filters(filter("vpc-id", &vpc_id))
            .filters(filter("default-for-az", "true"))
            .send()
            .await
            .map_err(|e| AwsError::api(vpc_subject, "DescribeSubnets", e))?;
        let mut subnets: Vec<String> = subnets
            .subnets
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| s.subnet_id)
            .collect();
        subnets.sort();
        if subnets.is_empty() {
            return Err(AwsError::NoDefaultVpc {
                region,
                detail: format!("{vpc_id} has no default subnets"),
            });
        }
        Ok(Env {
            region,
            account,
            vpc_id,
            vpc_cidr,
            subnets,
        })
    }
}

/// An EC2 filter with one value.
pub fn filter(name: &str, value: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .values(value)
        .build()
}
