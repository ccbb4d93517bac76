//! `tollgate clients hash`: the `key_sha256` line for a caller key, so the config never holds
//! the key itself.
//!
//! The key is read from stdin rather than taken as an argument: an argument would land in the
//! shell history and in every process listing. Nothing but the hash is printed.

use std::io::{IsTerminal, Read};

use anyhow::Context;
use tollgate_proxy::config::clients::key_sha256_line;

use crate::cli::ClientsCommand;

pub fn clients(action: &ClientsCommand) -> anyhow::Result<()> {
    match action {
        ClientsCommand::Hash => {
            let mut stdin = std::io::stdin().lock();
            if stdin.is_terminal() {
                eprintln!("type or paste the key, then press Enter and Ctrl-D");
            }
            let mut key = String::new();
            stdin
                .read_to_string(&mut key)
                .context("cannot read the key from stdin (it must be ASCII text)")?;
            // The error says what is wrong with the key, never the key.
            println!("{}", key_sha256_line(&key)?);
            Ok(())
        }
    }
}
