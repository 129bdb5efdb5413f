//! `cronwarden tokens create|list|revoke`: API tokens, managed in the store directly.

use clap::{Args, Subcommand};
use cronwarden::model::Role;
use jiff::Timestamp;
use serde_json::json;

use super::inspect::{audit, open_store, runtime, store_error, StoreArgs};
use super::schedule::write_out;
use super::CliError;
use cronwarden_daemon::api;

/// `cronwarden tokens ...`
#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(subcommand)]
    command: TokensCommand,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Create a token and print it, once: only its hash is stored.
    Create {
        /// A unique name saying whose it is ("ci", "alice").
        #[arg(long)]
        name: String,
        /// viewer (read), operator (also trigger, pause, resume, cancel) or admin (everything).
        #[arg(long)]
        role: String,
    },
    /// The tokens: name, role, created, revoked.
    List,
    /// Revoke a token: it stops working at once.
    Revoke {
        /// The token's name.
        name: String,
    },
}

/// `cronwarden tokens`.
pub fn tokens(args: TokensArgs) -> Result<(), CliError> {
    runtime()?.block_on(async {
        let store = open_store(&args.store).await?;
        let now = Timestamp::now();
        let text = match args.command {
            TokensCommand::Create { name, role } => {
                let role: Role = role.parse().map_err(|e: String| CliError(format!("--role: {e}")))?;
                let name = name.trim();
                if name.is_empty() || name.len() > 64 {
                    return Err(CliError("--name: give 1-64 characters".to_owned()));
                }
                let token = api::new_token().map_err(CliError)?;
                store
                    .create_token(name, role, &api::hash_token(&token), now)
                    .await
                    .map_err(store_error)?;
                audit(&*store, "token.create", name, Some(json!({ "role": role }))).await?;
                if args.store.json {
                    format!("{:#}\n", json!({ "name": name, "role": role, "token": token }))
                } else {
                    format!(
                        "{token}\n\nThe {role} token {name:?}. It is shown this once; keep it somewhere safe.\n"
                    )
                }
            }
            TokensCommand::List => {
                let tokens = store.list_tokens().await.map_err(store_error)?;
                if args.store.json {
                    format!("{:#}\n", json!(tokens))
                } else {
                    let mut out = format!("{:<24} {:<9} {:<22} {}\n", "NAME", "ROLE", "CREATED", "REVOKED");
                    for t in &tokens {
                        out.push_str(&format!(
                            "{:<24} {:<9} {:<22} {}\n",
                            t.name,
                            t.role,
                            t.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            t.revoked_at
                                .map_or("-".to_owned(), |r| r.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                        ));
                    }
                    out
                }
            }
            TokensCommand::Revoke { name } => {
                if !store.revoke_token(&name, now).await.map_err(store_error)? {
                    return Err(CliError(format!("no token named {name:?} is active")));
                }
                audit(&*store, "token.revoke", &name, None).await?;
                if args.store.json {
                    format!("{:#}\n", json!({ "name": name, "revoked": true }))
                } else {
                    format!("revoked {name}\n")
                }
            }
        };
        store.close().await;
        write_out(&text)
    })
}
