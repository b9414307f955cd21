//! Issue 15, write: the options of how the receiver writes, from the option table into
//! [`arsync_core::engine::WriteOptions`] (syntax checked here, as rsync's option parser does).

use arsync_core::engine::chmod::ChmodRules;
use arsync_core::engine::SyncOptions;

use super::cli::Cli;
use super::ParseOutcome;

/// Fill `opts.write` from `cli`.
pub(super) fn apply(cli: &Cli, opts: &mut SyncOptions) -> Result<(), ParseOutcome> {
    // The umask only changes the bits, not whether the syntax holds.
    ChmodRules::parse_all(&cli.chmod, 0o022).map_err(ParseOutcome::Usage)?;
    opts.write.chmod = cli.chmod.clone();
    opts.write.mkpath = cli.mkpath;
    opts.write.force = cli.force;
    // Issue 15, data:
    opts.write.sparse = cli.sparse;
    opts.write.executability = cli.executability;
    opts.write.append = if cli.append_verify {
        2
    } else {
        cli.append.min(2)
    };
    // rsync's --append implies --inplace; ours appends through a staged file (see the
    // receiver's `append`), which needs the old file intact until the end.
    if opts.write.append > 0 {
        opts.inplace = false;
    }
    Ok(())
}
