//! The CPU architectures the engine runs on, and what each is called
//! wherever the stack names one: the image platform (OCI), the task
//! definitions' `runtimePlatform.cpuArchitecture` (ECS), the Amazon Linux
//! AMI parameter of the executors, and which EC2 instance types run it.
//! The engine image decides the architecture; everything that runs the
//! image follows it, and [`Architecture::check_instance_type`] refuses an
//! executor instance type that cannot.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A CPU architecture the engine image can be built for.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum Architecture {
    /// 64-bit x86 (Intel, AMD).
    #[default]
    #[serde(rename = "x86_64")]
    X86_64,
    /// 64-bit ARM (AWS Graviton).
    #[serde(rename = "arm64")]
    Arm64,
}

/// Why the engine image cannot run where the stack would run it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchitectureError {
    /// The executors' instance type runs another architecture than the image.
    #[error(
        "executors.instance_type `{instance_type}` is an {instance} instance type, but the engine \
         image is {image}: use an {image} instance type (e.g. `{suggestion}` for {image}) or an \
         {instance} engine image"
    )]
    InstanceType {
        /// The spec's instance type.
        instance_type: String,
        /// What it runs.
        instance: Architecture,
        /// What the engine image is built for.
        image: Architecture,
        /// An instance type of the image's architecture, of a similar size.
        suggestion: String,
    },
    /// The spec declares one architecture and the engine binary is another.
    #[error(
        "the spec says the engine image is {declared} (`image.architecture`), but the engine \
         binary it is built from is {built}: ship an {declared} binary (--engine-binary) or \
         change `image.architecture`"
    )]
    Built {
        /// `image.architecture`.
        declared: Architecture,
        /// The binary's.
        built: Architecture,
    },
}

impl Architecture {
    /// The spec's name (`x86_64`, `arm64`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Arm64 => "arm64",
        }
    }

    /// The OCI image platform's `architecture` (`amd64`, `arm64`).
    pub fn oci(self) -> &'static str {
        match self {
            Self::X86_64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }

    /// ECS's `runtimePlatform.cpuArchitecture` (`X86_64`, `ARM64`).
    pub fn ecs(self) -> &'static str {
        match self {
            Self::X86_64 => "X86_64",
            Self::Arm64 => "ARM64",
        }
    }

    /// The architecture ECS calls `name`.
    pub fn from_ecs(name: &str) -> Option<Self> {
        [Self::X86_64, Self::Arm64]
            .into_iter()
            .find(|a| a.ecs() == name)
    }

    /// The architecture of this process (and of binaries built for it).
    pub fn host() -> Option<Self> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Self::X86_64),
            "aarch64" => Some(Self::Arm64),
            _ => None,
        }
    }

    /// The public SSM parameter holding the executors' AMI for this
    /// architecture (Amazon Linux 2023).
    pub fn ami_parameter(self) -> &'static str {
        match self {
            Self::X86_64 => "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
            Self::Arm64 => "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
        }
    }

    /// What an EC2 instance type runs. Graviton is `a1` and every family
    /// with a `g` right after its generation (`t4g`, `m6gd`, `c7gn`,
    /// `im4gn`, `g5g`, ...); the rest of the current families are x86_64.
    /// A static rule rather than `DescribeInstanceTypes`, so a mismatch is
    /// refused before any AWS call.
    pub fn of_instance_type(instance_type: &str) -> Self {
        let family = instance_type
            .split('.')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if family == "a1" {
            return Self::Arm64;
        }
        let after_generation = family
            .trim_start_matches(|c: char| c.is_ascii_alphabetic())
            .trim_start_matches(|c: char| c.is_ascii_digit());
        if after_generation.starts_with('g') {
            Self::Arm64
        } else {
            Self::X86_64
        }
    }

    /// Refuses an executor instance type that does not run this
    /// architecture, naming one that does.
    pub fn check_instance_type(self, instance_type: &str) -> Result<(), ArchitectureError> {
        let instance = Self::of_instance_type(instance_type);
        if instance == self {
            return Ok(());
        }
        Err(ArchitectureError::InstanceType {
            instance_type: instance_type.to_owned(),
            instance,
            image: self,
            suggestion: self.instance_type_like(instance_type),
        })
    }

    /// An instance type of this architecture like `instance_type`: the
    /// burstable or current general purpose, compute or memory family of
    /// the same size where that size exists, else the smallest sensible
    /// burstable one.
    fn instance_type_like(self, instance_type: &str) -> String {
        const BURSTABLE: &[&str] = &[
            "nano", "micro", "small", "medium", "large", "xlarge", "2xlarge",
        ];
        const GRAVITON: &[&str] = &[
            "medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge",
        ];
        const INTEL: &[&str] = &[
            "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge",
            "48xlarge",
        ];
        let (family, size) = instance_type
            .to_ascii_lowercase()
            .split_once('.')
            .map(|(f, s)| (f.to_owned(), s.to_owned()))
            .unwrap_or_default();
        let fallback = match self {
            Self::X86_64 => "t3.medium",
            Self::Arm64 => "t4g.medium",
        };
        let (target, sizes): (String, &[&str]) = match (family.chars().next(), self) {
            (Some('t'), Self::X86_64) => ("t3".into(), BURSTABLE),
            (Some('t'), Self::Arm64) => ("t4g".into(), BURSTABLE),
            (Some(c @ ('m' | 'c' | 'r')), Self::X86_64) => (format!("{c}7i"), INTEL),
            (Some(c @ ('m' | 'c' | 'r')), Self::Arm64) => (format!("{c}7g"), GRAVITON),
            _ => return fallback.to_owned(),
        };
        if sizes.contains(&size.as_str()) {
            format!("{target}.{size}")
        } else {
            fallback.to_owned()
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graviton_families_are_arm64_and_the_rest_x86_64() {
        for arm in [
            "t4g.medium",
            "a1.large",
            "m6g.large",
            "m6gd.xlarge",
            "c7g.large",
            "c7gn.2xlarge",
            "r8g.large",
            "x2gd.large",
            "im4gn.large",
            "is4gen.large",
            "g5g.xlarge",
            "hpc7g.4xlarge",
            "M7G.Large",
        ] {
            assert_eq!(
                Architecture::of_instance_type(arm),
                Architecture::Arm64,
                "{arm}"
            );
        }
        for x86 in [
            "t3.medium",
            "t3a.small",
            "t2.micro",
            "m5.large",
            "m7i-flex.large",
            "c5n.xlarge",
            "g4dn.xlarge",
            "g5.xlarge",
            "gr6.4xlarge",
            "p4d.24xlarge",
            "inf2.xlarge",
            "x2iedn.xlarge",
            "z1d.large",
            "i4i.large",
        ] {
            assert_eq!(
                Architecture::of_instance_type(x86),
                Architecture::X86_64,
                "{x86}"
            );
        }
    }

    #[test]
    fn a_mismatched_instance_type_is_refused_with_one_that_fits() {
        assert_eq!(Architecture::Arm64.check_instance_type("t4g.small"), Ok(()));
        assert_eq!(
            Architecture::X86_64.check_instance_type("t3.medium"),
            Ok(())
        );
        let err = Architecture::Arm64
            .check_instance_type("t3.medium")
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("`t3.medium` is an x86_64 instance type"),
            "{text}"
        );
        assert!(text.contains("the engine image is arm64"), "{text}");
        assert!(text.contains("`t4g.medium` for arm64"), "{text}");

        let like = |arch: Architecture, t: &str| match arch.check_instance_type(t) {
            Err(ArchitectureError::InstanceType { suggestion, .. }) => suggestion,
            other => panic!("{t}: {other:?}"),
        };
        assert_eq!(like(Architecture::Arm64, "t3a.xlarge"), "t4g.xlarge");
        assert_eq!(like(Architecture::Arm64, "c5.4xlarge"), "c7g.4xlarge");
        assert_eq!(like(Architecture::Arm64, "m5.24xlarge"), "t4g.medium");
        assert_eq!(like(Architecture::Arm64, "p4d.24xlarge"), "t4g.medium");
        assert_eq!(like(Architecture::X86_64, "t4g.micro"), "t3.micro");
        assert_eq!(like(Architecture::X86_64, "r7g.2xlarge"), "r7i.2xlarge");
        // No 7th-generation Intel medium: the burstable one.
        assert_eq!(like(Architecture::X86_64, "m7g.medium"), "t3.medium");
    }

    #[test]
    fn names_per_service() {
        for arch in [Architecture::X86_64, Architecture::Arm64] {
            assert_eq!(Architecture::from_ecs(arch.ecs()), Some(arch));
            assert!(arch.ami_parameter().ends_with(arch.as_str()));
            let json = serde_json::to_value(arch).unwrap();
            assert_eq!(json, arch.as_str());
        }
        assert_eq!(Architecture::X86_64.oci(), "amd64");
        assert_eq!(Architecture::Arm64.ecs(), "ARM64");
        assert_eq!(Architecture::from_ecs("x86_64"), None);
        assert_eq!(Architecture::default(), Architecture::X86_64);
    }
}
