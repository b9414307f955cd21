//! A remote command's stderr, shown as it comes except a shell's "command not found" for the
//! program the command runs: that line is held back, so that a caller falling back to
//! rsync's protocol (no arsync on the host) does so quietly, and shown at the end otherwise.
//!
//! What it owns: splitting stderr bytes into lines and judging each ([`HeldStderr`], sans-IO:
//! bytes in, bytes to show out). What it does not own: reading the stderr (a child's pipe in
//! `crate::pipe`, an SSH channel's extended data in `crate::ssh_native`) or writing ours.

/// The longest partial line kept while waiting for its end: longer ones are shown as they are.
const MAX_PARTIAL: usize = 64 * 1024;

/// The stderr of a remote command running `program`, line by line.
#[derive(Debug)]
pub struct HeldStderr {
    program: String,
    partial: Vec<u8>,
    held: Vec<String>,
}

impl HeldStderr {
    /// For a command running `program` (a path or a name; empty: nothing is held).
    pub fn new(program: &str) -> Self {
        HeldStderr {
            program: program.to_owned(),
            partial: Vec::new(),
            held: Vec::new(),
        }
    }

    /// Take `bytes` of stderr; returns what to show now (whole lines not held back).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.partial.extend_from_slice(bytes);
        let mut show = Vec::new();
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]);
            if is_not_found(&text, &self.program) {
                self.held.push(text.into_owned());
            } else {
                show.extend_from_slice(&line);
            }
        }
        if self.partial.len() > MAX_PARTIAL {
            show.append(&mut self.partial);
        }
        show
    }

    /// The stderr ended: what is left to show (an unfinished last line) and the lines held
    /// back.
    pub fn finish(mut self) -> (Vec<u8>, Vec<String>) {
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() && is_not_found(&String::from_utf8_lossy(&rest), &self.program) {
            self.held.push(String::from_utf8_lossy(&rest).into_owned());
            return (Vec::new(), self.held);
        }
        (rest, self.held)
    }
}

/// Show `lines` (held back earlier) on our stderr.
pub fn show(lines: &[String]) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    for l in lines {
        let _ = writeln!(err, "{l}");
    }
}

/// Whether `line` is a shell saying `program` was not found (`bash: arsync: command not
/// found`, `sh: 1: arsync: not found`, `zsh:1: command not found: arsync`, `bash: line 1:
/// /opt/arsync: No such file or directory`).
pub fn is_not_found(line: &str, program: &str) -> bool {
    let name = program.rsplit('/').next().unwrap_or(program);
    !name.is_empty()
        && (line.contains("not found") || line.contains("No such file or directory"))
        && line.contains(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shells_saying_not_found() {
        for l in [
            "bash: arsync: command not found",
            "sh: 1: arsync: not found",
            "zsh:1: command not found: arsync",
            "bash: line 1: /opt/bin/arsync: No such file or directory",
        ] {
            assert!(is_not_found(l, "arsync"), "{l}");
        }
        assert!(is_not_found(
            "bash: arsync: command not found",
            "/usr/local/bin/arsync"
        ));
        assert!(!is_not_found("Permission denied (publickey).", "arsync"));
        assert!(!is_not_found("bash: rsync: command not found", "arsync"));
    }

    #[test]
    fn lines_split_across_chunks_are_judged_whole() {
        let mut h = HeldStderr::new("arsync");
        let mut shown = h.feed(b"warning: one\nbash: line 1: ars");
        shown.extend(h.feed(b"ync: command not found\nlast"));
        let (rest, held) = h.finish();
        shown.extend(rest);
        assert_eq!(shown, b"warning: one\nlast");
        assert_eq!(
            held,
            vec!["bash: line 1: arsync: command not found".to_owned()]
        );
    }

    #[test]
    fn nothing_is_held_for_no_program_and_a_line_without_end_is_bounded() {
        let mut h = HeldStderr::new("");
        assert_eq!(h.feed(b"sh: x: not found\n"), b"sh: x: not found\n");
        let long = vec![b'a'; MAX_PARTIAL + 1];
        assert_eq!(h.feed(&long).len(), long.len());
    }
}
