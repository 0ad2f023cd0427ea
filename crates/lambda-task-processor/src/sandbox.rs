//! What a job leaves behind in its Lambda sandbox, cleared before the next
//! job comes to the same sandbox.
//!
//! A job's process can outlive it: a child started with `setsid` leaves the
//! job's process group, so the group's SIGKILL misses it, and it would run
//! on into the next invocation of a warm sandbox, where it could read the
//! next job's `/proc/<pid>/environ` (its job role's credentials), its pipes
//! and its files. So the runtime makes itself the child subreaper
//! (`prctl(PR_SET_CHILD_SUBREAPER)`): whatever a job leaves behind, however
//! it detaches, stays among the runtime's descendants. After each run every
//! descendant is killed; should one survive, or should the runtime not be
//! able to keep track of them, the runtime exits once the job's end is
//! recorded, and Lambda discards the sandbox. The scratch directory (`/tmp`
//! on Lambda, `BERTH_SCRATCH` in the template) is emptied too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// Rounds of killing: a process may fork while the one before is killed.
const ROUNDS: usize = 5;

/// Clears a sandbox after each job.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Whether the runtime adopts what its jobs leave behind (the subreaper
    /// call succeeded); without it a leftover cannot be found, and the
    /// runtime exits after each job.
    pub adopts: Result<(), String>,
    /// Emptied after each job.
    pub scratch: Option<PathBuf>,
}

/// What clearing found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleared {
    /// Processes the job left behind, killed.
    pub killed: Vec<i32>,
    /// Processes still there after every round.
    pub survivors: Vec<i32>,
    /// What could not be removed from the scratch directory, with why.
    pub scratch_left: Vec<String>,
}

impl Cleared {
    /// Whether the sandbox may take another job.
    pub fn is_clean(&self) -> bool {
        self.survivors.is_empty() && self.scratch_left.is_empty()
    }
}

impl Sandbox {
    /// Makes this process the reaper of its descendants' orphans; `scratch`
    /// is emptied after each job.
    pub fn new(scratch: Option<PathBuf>) -> Self {
        let adopts = nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| format!("prctl(PR_SET_CHILD_SUBREAPER) failed: {e}"));
        Self { adopts, scratch }
    }

    /// Kills every process below this one and empties the scratch
    /// directory. Call it once the job's own process has been waited for.
    pub async fn clear(&self) -> Cleared {
        let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        let mut cleared = Cleared::default();
        for _ in 0..ROUNDS {
            let left = descendants(me);
            if left.is_empty() {
                break;
            }
            for &pid in &left {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                if !cleared.killed.contains(&pid) {
                    cleared.killed.push(pid);
                }
            }
            // The killed become this process's zombies as their parents
            // die: reaped here, each by its pid (never another's child).
            for _ in 0..50 {
                reap(me);
                if descendants(me).is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        cleared.survivors = descendants(me);
        if let Some(dir) = &self.scratch {
            cleared.scratch_left = empty(dir);
        }
        cleared
    }
}

/// Reaps this process's children that are zombies.
fn reap(me: i32) {
    for (pid, (parent, state)) in processes() {
        if parent == me && state == 'Z' {
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}

/// Every living process below `root` (zombies are dead: only their parent's
/// wait is left).
fn descendants(root: i32) -> Vec<i32> {
    let all = processes();
    let mut below = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (&pid, &(ppid, _)) in &all {
            if ppid == parent && pid != root {
                frontier.push(pid);
                below.push(pid);
            }
        }
    }
    below.retain(|pid| all.get(pid).is_some_and(|&(_, state)| state != 'Z'));
    below.sort_unstable();
    below
}

/// Each process (pid → parent pid, state), from `/proc/<pid>/stat`.
fn processes() -> HashMap<i32, (i32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.filter_map(|entry| {
        let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&stat).map(|(ppid, state)| (pid, (ppid, state)))
    })
    .collect()
}

/// The parent pid and state of a `/proc/<pid>/stat` line: the fields after
/// the command, which is in parentheses and may hold any character.
fn parse_stat(stat: &str) -> Option<(i32, char)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Removes everything in `dir`; what could not be removed, with why.
fn empty(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let removed = match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
                Ok(_) => std::fs::remove_file(&path),
                Err(e) => Err(e),
            };
            removed.err().map(|e| format!("{}: {e}", path.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_is_read_past_a_command_of_any_characters() {
        assert_eq!(parse_stat("42 (sh) S 7 42 42 0"), Some((7, 'S')));
        assert_eq!(parse_stat("43 (a) b) (c) Z 1 1 1"), Some((1, 'Z')));
        assert_eq!(parse_stat("garbage"), None);
    }

    /// This test's own name, to run it again in a process of its own (the
    /// clearing kills every process below the one it runs in).
    const LEFTOVER_TEST: &str = "sandbox::tests::nothing_a_job_leaves_behind_outlives_it";
    /// Set in that process: whether it clears the sandbox.
    const LEFTOVER_MODE: &str = "BERTH_TEST_LEFTOVER_MODE";

    /// In the process of its own: runs a job that leaves a process behind
    /// with `setsid` (out of the job's process group and session) and a
    /// file in the scratch directory; clears the sandbox, or not; prints
    /// whether the leftover still lives.
    fn leave_a_process_behind(clear: bool) {
        let dir = std::env::temp_dir().join(format!("berth-leftover-{}", std::process::id()));
        let scratch = dir.join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let pid_file = dir.join("escaped");
        let sandbox = Sandbox::new(Some(scratch.clone()));
        sandbox.adopts.clone().unwrap();
        let script = format!(
            "setsid sh -c 'echo $$ > {pid}; exec sleep 60' & \
             while [ ! -s {pid} ]; do sleep 0.01; done; \
             echo secret > {scratch}/left; mkdir {scratch}/d; echo x > {scratch}/d/f",
            pid = pid_file.display(),
            scratch = scratch.display()
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (escaped, cleared) = rt.block_on(async {
            let status = crate::runtime::spawn("sh", &["-c".into(), script], Vec::new())
                .unwrap()
                .wait()
                .await
                .unwrap();
            assert!(status.success());
            let escaped: i32 = std::fs::read_to_string(&pid_file)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert!(descendants(std::process::id() as i32).contains(&escaped));
            let cleared = if clear {
                Some(sandbox.clear().await)
            } else {
                None
            };
            (escaped, cleared)
        });
        let alive = descendants(std::process::id() as i32).contains(&escaped);
        let scratch_files = std::fs::read_dir(&scratch).unwrap().count();
        if !clear {
            let _ = kill(Pid::from_raw(escaped), Signal::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&dir);
        println!("<<<alive={alive} scratch_files={scratch_files} cleared={cleared:?}>>>");
    }

    fn in_a_process_of_its_own(mode: &str) -> String {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                LEFTOVER_TEST,
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(LEFTOVER_MODE, mode)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text.split_once("<<<")
            .and_then(|(_, rest)| rest.split_once(">>>"))
            .map(|(seen, _)| seen.to_owned())
            .unwrap_or_else(|| panic!("no report in: {text}"))
    }

    /// The issue this answers: a job's `setsid` child escaped the process
    /// group's kill and lived on into the next job's invocation.
    #[test]
    fn nothing_a_job_leaves_behind_outlives_it() {
        match std::env::var(LEFTOVER_MODE).as_deref() {
            Ok("clear") => return leave_a_process_behind(true),
            Ok("keep") => return leave_a_process_behind(false),
            _ => {}
        }
        // Left alone, the process lives on: the test sees a leftover where
        // there is one.
        let kept = in_a_process_of_its_own("keep");
        assert!(kept.starts_with("alive=true scratch_files=2"), "{kept}");
        let cleared = in_a_process_of_its_own("clear");
        assert!(
            cleared.starts_with("alive=false scratch_files=0"),
            "{cleared}"
        );
        assert!(
            cleared.contains("survivors: [], scratch_left: []"),
            "{cleared}"
        );
    }
}
