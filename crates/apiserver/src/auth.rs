//! Authentication: bearer tokens. The admin token is written into the kubeconfig; the join
//! token is what node agents present. Both grant full access: there is no authorization
//! layer (RBAC) yet, so every authenticated caller is a cluster administrator.

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Admin,
    Node,
    Anonymous,
}

#[derive(Clone)]
pub struct Authenticator {
    admin_token: String,
    join_token: String,
}

impl std::fmt::Debug for Authenticator {
    // Never print the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator { .. }")
    }
}

/// Compares without an early exit, so the time taken says nothing about the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator {
    pub fn new(admin_token: String, join_token: String) -> Self {
        Authenticator {
            admin_token,
            join_token,
        }
    }

    /// Reads the `Authorization` header value. None means credentials were given but are
    /// wrong (401); Anonymous means none were given.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<Identity> {
        let Some(value) = authorization else {
            return Some(Identity::Anonymous);
        };
        let token = value.strip_prefix("Bearer ")?.trim().as_bytes();
        if constant_time_eq(token, self.admin_token.as_bytes()) {
            Some(Identity::Admin)
        } else if constant_time_eq(token, self.join_token.as_bytes()) {
            Some(Identity::Node)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let a = Authenticator::new("adm".into(), "join".into());
        assert_eq!(a.authenticate(Some("Bearer adm")), Some(Identity::Admin));
        assert_eq!(a.authenticate(Some("Bearer join")), Some(Identity::Node));
        assert_eq!(a.authenticate(Some("Bearer nope")), None);
        assert_eq!(a.authenticate(Some("Basic adm")), None);
        assert_eq!(a.authenticate(None), Some(Identity::Anonymous));
        assert!(!format!("{a:?}").contains("adm"));
    }
}
