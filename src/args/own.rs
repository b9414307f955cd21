//! Issue 15, own: the options of ownership mapping and of how file data is written, from the
//! option table into [`OwnOptions`] (rsync's rules: `--chown=USER:GROUP` is `--usermap=*:USER
//! --groupmap=*:GROUP`, each map implies `-o` or `-g`, and a map's syntax is checked here).

use arsync_core::engine::idmap::{check_syntax, MapKind};
use arsync_core::engine::own::OwnOptions;
use arsync_core::engine::SyncOptions;

use super::cli::Cli;
use super::ParseOutcome;

/// Fill `opts.own` (and the `-o`/`-g` the maps imply) from `cli`.
pub(super) fn apply(cli: &Cli, opts: &mut SyncOptions) -> Result<(), ParseOutcome> {
    let mut own = OwnOptions {
        usermap: cli.usermap.clone(),
        groupmap: cli.groupmap.clone(),
        secluded_args: cli.secluded_args && !cli.no_secluded_args,
    };
    if let Some(chown) = &cli.chown {
        let (user, group) = match chown.split_once(':') {
            Some((u, g)) => (u, g),
            None => (chown.as_str(), ""),
        };
        for (part, map, kind) in [
            (user, &mut own.usermap, "usermap"),
            (group, &mut own.groupmap, "groupmap"),
        ] {
            if part.is_empty() {
                continue;
            }
            if map.is_some() {
                return Err(ParseOutcome::Usage(format!(
                    "--chown conflicts with prior --{kind}."
                )));
            }
            *map = Some(format!("*:{part}"));
        }
    }
    for (map, kind) in [
        (&own.usermap, MapKind::User),
        (&own.groupmap, MapKind::Group),
    ] {
        if let Some(m) = map {
            check_syntax(m, kind).map_err(ParseOutcome::Usage)?;
        }
    }
    opts.owner |= own.usermap.is_some();
    opts.group |= own.groupmap.is_some();
    opts.own = own;
    Ok(())
}
