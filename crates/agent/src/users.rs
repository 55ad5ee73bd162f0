//! The container process's uid, gid and groups, as containerd's CRI plugin resolves them
//! (`WithUser`, `WithUserID`, `WithUsername`, `WithAdditionalGIDs`, supplemental groups)
//! against the image's /etc/passwd and /etc/group, given as text by the agent.

use podium_runtime::UserSpec;

/// One /etc/passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// One /etc/group entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// An image's user database; missing files are empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserDb {
    pub users: Vec<PasswdEntry>,
    pub groups: Vec<GroupEntry>,
}

/// Why the user cannot be resolved (containerd's texts; a CreateContainerError).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("no users found")]
    NoUser(String),
    #[error("no groups found")]
    NoGroup(String),
    #[error("invalid USER value {0}")]
    Invalid(String),
}

impl UserDb {
    /// Parses /etc/passwd and /etc/group text (malformed lines skipped).
    pub fn parse(passwd: Option<&str>, group: Option<&str>) -> UserDb {
        let users = passwd
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some(PasswdEntry {
                    name: f.first()?.to_string(),
                    uid: f.get(2)?.parse().ok()?,
                    gid: f.get(3)?.parse().ok()?,
                })
            })
            .collect();
        let groups = group
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some(GroupEntry {
                    name: f.first()?.to_string(),
                    gid: f.get(2)?.parse().ok()?,
                    members: f
                        .get(3)
                        .map(|m| {
                            m.split(',')
                                .filter(|s| !s.is_empty())
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default(),
                })
            })
            .collect();
        UserDb { users, groups }
    }

    fn by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.users.iter().find(|u| u.uid == uid)
    }

    fn by_name(&self, name: &str) -> Option<&PasswdEntry> {
        self.users.iter().find(|u| u.name == name)
    }

    fn group_gid(&self, name: &str) -> Option<u32> {
        self.groups.iter().find(|g| g.name == name).map(|g| g.gid)
    }

    /// The gids of groups listing `user` as a member, except its own-named group.
    fn member_gids(&self, user: &str) -> Vec<u32> {
        self.groups
            .iter()
            .filter(|g| g.name != user && g.members.iter().any(|m| m == user))
            .map(|g| g.gid)
            .collect()
    }
}

/// The image's USER split as kubelet's `getImageUser` sees it: a numeric uid, or a name
/// (`None, None` when empty: root).
pub fn image_user(user: &str) -> (Option<i64>, Option<String>) {
    let first = user.split(':').next().unwrap_or_default();
    if first.is_empty() {
        return (None, None);
    }
    match first.parse::<i64>() {
        Ok(uid) => (Some(uid), None),
        Err(_) => (None, Some(first.to_string())),
    }
}

/// Resolves the process user from a user string as containerd's `WithUser` does: `uid`
/// (gid from /etc/passwd, else 0), `name` (must exist), `u:g` with names or numbers.
pub fn resolve_user(userstr: &str, db: &UserDb) -> Result<(u32, u32), UserError> {
    let parts: Vec<&str> = userstr.split(':').collect();
    match parts.as_slice() {
        [u] => match u.parse::<u32>() {
            Ok(uid) => Ok((uid, db.by_uid(uid).map_or(0, |e| e.gid))),
            Err(_) => db
                .by_name(u)
                .map(|e| (e.uid, e.gid))
                .ok_or_else(|| UserError::NoUser(u.to_string())),
        },
        [u, g] => {
            let uid = match u.parse::<u32>() {
                Ok(uid) => uid,
                Err(_) => db
                    .by_name(u)
                    .map(|e| e.uid)
                    .ok_or_else(|| UserError::NoUser(u.to_string()))?,
            };
            let gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => db
                    .group_gid(g)
                    .ok_or_else(|| UserError::NoGroup(g.to_string()))?,
            };
            Ok((uid, gid))
        }
        _ => Err(UserError::Invalid(userstr.to_string())),
    }
}

/// The full process user: `userstr` resolved ([`resolve_user`]), then the additional gids
/// of containerd: the primary gid, the groups `user_for_groups` (a name, or a uid looked
/// up in /etc/passwd) is a member of, then `supplemental` (fsGroup and
/// supplementalGroups), without duplicates.
pub fn process_user(
    userstr: &str,
    user_for_groups: &str,
    supplemental: &[u32],
    db: &UserDb,
) -> Result<UserSpec, UserError> {
    let (uid, gid) = resolve_user(userstr, db)?;
    let name = match user_for_groups.parse::<u32>() {
        Ok(u) => db.by_uid(u).map(|e| e.name.clone()),
        Err(_) => Some(user_for_groups.to_string()),
    };
    let mut gids = vec![gid];
    if let Some(name) = name {
        gids.extend(db.member_gids(&name));
    }
    gids.extend_from_slice(supplemental);
    let mut seen = std::collections::HashSet::new();
    gids.retain(|g| seen.insert(*g));
    Ok(UserSpec {
        uid,
        gid,
        additional_gids: gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/nonexistent:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nnginx:x:101:nginx\nbob:x:1000:\nwheel:x:10:root,bob\naudio:x:29:bob\n";

    fn db() -> UserDb {
        UserDb::parse(Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn image_user_forms() {
        assert_eq!(image_user(""), (None, None));
        assert_eq!(image_user("1000"), (Some(1000), None));
        assert_eq!(image_user("1000:50"), (Some(1000), None));
        assert_eq!(image_user("nginx"), (None, Some("nginx".into())));
        assert_eq!(image_user("nginx:nginx"), (None, Some("nginx".into())));
    }

    #[test]
    fn resolves_like_containerd() {
        let db = db();
        assert_eq!(resolve_user("0", &db), Ok((0, 0)));
        assert_eq!(resolve_user("1000", &db), Ok((1000, 1000)));
        // Unknown uid: gid 0, no error.
        assert_eq!(resolve_user("4242", &db), Ok((4242, 0)));
        assert_eq!(resolve_user("nginx", &db), Ok((101, 101)));
        assert_eq!(resolve_user("bob:audio", &db), Ok((1000, 29)));
        assert_eq!(resolve_user("5:7", &db), Ok((5, 7)));
        assert_eq!(
            resolve_user("ghost", &db),
            Err(UserError::NoUser("ghost".into()))
        );
        assert_eq!(
            resolve_user("bob:ghosts", &db),
            Err(UserError::NoGroup("ghosts".into()))
        );
        assert!(matches!(
            resolve_user("a:b:c", &db),
            Err(UserError::Invalid(_))
        ));
        assert_eq!(resolve_user("7", &UserDb::default()), Ok((7, 0)));
    }

    #[test]
    fn additional_groups() {
        let db = db();
        let u = process_user("1000", "1000", &[2000, 10, 3000], &db).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.additional_gids, vec![1000, 10, 29, 2000, 3000]);
        let u = process_user("1000:5", "1000", &[], &db).unwrap();
        assert_eq!(u.additional_gids, vec![5, 10, 29]);
        let r = process_user("0", "0", &[], &db).unwrap();
        assert_eq!(r.additional_gids, vec![0, 10]);
        let n = process_user("nginx", "nginx", &[], &db).unwrap();
        assert_eq!((n.uid, n.gid, n.additional_gids), (101, 101, vec![101]));
    }
}
