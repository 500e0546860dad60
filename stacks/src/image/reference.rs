//! Image references as users write them (`host[:port]/repo[:tag]`) and the
//! registry base URL they imply.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::ImageError;

/// Where to push: a registry host, a repository in it, and an optional tag
/// (without one the manifest is pushed by digest only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `host` or `host:port`, as in the reference.
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
}

impl ImageRef {
    /// `https://host`, or `http://host` for a loopback registry (or when
    /// `plain_http` is set): local test registries don't speak TLS.
    pub fn base_url(&self, plain_http: bool) -> String {
        let scheme = if plain_http || self.is_loopback() {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", self.registry)
    }

    fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => self.registry.as_str(),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// `registry/repository` (no tag or digest).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| ImageError::Reference {
            reference: s.to_owned(),
            reason: reason.to_owned(),
        };
        if s.contains('@') {
            return Err(err(
                "a push target cannot carry a digest; the digest comes from the build",
            ));
        }
        let (registry, rest) = s
            .split_once('/')
            .ok_or_else(|| err("expected REGISTRY/REPOSITORY[:TAG]"))?;
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(err(
                "the first part must be a registry host (with a dot or a port, or localhost)",
            ));
        }
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((repo, tag)) => (repo, Some(tag)),
            None => (rest, None),
        };
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
                    && part.as_bytes()[0].is_ascii_alphanumeric()
            });
        if !repo_ok {
            return Err(err(
                "the repository must be lowercase letters, digits and . _ - separated by /",
            ));
        }
        if let Some(tag) = tag {
            let tag_ok = (1..=128).contains(&tag.len())
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && tag.as_bytes()[0] != b'.'
                && tag.as_bytes()[0] != b'-';
            if !tag_ok {
                return Err(err("the tag must be 1-128 of A-Z a-z 0-9 . _ -"));
            }
        }
        Ok(ImageRef {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registry_repository_and_tag() {
        let r: ImageRef = "127.0.0.1:5000/stackctl/engine:v1".parse().unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "stackctl/engine");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.base_url(false), "http://127.0.0.1:5000");
        assert_eq!(r.to_string(), "127.0.0.1:5000/stackctl/engine:v1");

        let ecr: ImageRef = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo-engine"
            .parse()
            .unwrap();
        assert_eq!(ecr.tag, None);
        assert_eq!(
            ecr.base_url(false),
            "https://123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
        let local: ImageRef = "localhost/engine".parse().unwrap();
        assert_eq!(local.base_url(false), "http://localhost");
    }

    #[test]
    fn rejects_what_cannot_be_pushed() {
        for bad in [
            "engine",
            "library/engine:v1",
            "127.0.0.1:5000/Engine",
            "127.0.0.1:5000/engine:bad/tag",
            "127.0.0.1:5000/engine@sha256:abc",
            "127.0.0.1:5000//engine",
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad} should be rejected");
        }
    }
}
