//! A line-based terminal chat client on the Quip SDK.
//!
//! ```sh
//! cargo run -p quip-sdk --example chat -- --addr 127.0.0.1:4433 \
//!     --cert data/tls/cert.pem --user alice --password 'correct horse' --register
//! ```
//!
//! Incoming messages are printed as they arrive while stdin is read; `/help` lists
//! the commands, any other line is sent to the open conversation (`@user_…` and
//! `@all` in it become mentions).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use quip_protocol::ids;
use quip_sdk::{Client, ClientOptions, ConnectionState, Event, GroupRole, JoinMode, Trust, pb};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Terminal chat client for a Quip broker.
#[derive(Debug, Parser)]
struct Args {
    /// Broker QUIC address.
    #[arg(long, default_value = "127.0.0.1:4433")]
    addr: SocketAddr,
    /// The broker's certificate (PEM), e.g. `<data_dir>/tls/cert.pem`.
    #[arg(long, required_unless_present = "fingerprint")]
    cert: Option<PathBuf>,
    /// Pin the broker's certificate by the SHA-256 it prints at start instead.
    #[arg(long, conflicts_with = "cert")]
    fingerprint: Option<String>,
    /// TLS server name the certificate must carry (not checked with --fingerprint).
    #[arg(long, default_value = "localhost")]
    server_name: String,
    #[arg(long)]
    user: String,
    #[arg(long, env = "QUIP_PASSWORD")]
    password: String,
    /// Create the account instead of logging in.
    #[arg(long)]
    register: bool,
    /// Display name for --register.
    #[arg(long)]
    nickname: Option<String>,
    /// Device id; keep it stable so the broker resumes this device where it left off.
    #[arg(long, default_value = "terminal")]
    device: String,
}

const HELP: &str = "\
commands:
  /open <user_id|group_id>  make it the current conversation, show the last 20 messages
  /history [n]              n (default 20) messages before the oldest shown
  /convs                    conversations, unread counts, @ = you were mentioned
  /read                     mark the current conversation read
  /groups                   your groups
  /create <name> [user_id…] create a group (and open it)
  /join <group_id>          join a group
  /leave                    leave the current group
  /invite <user_id…>        add users to the current group
  /members                  members of the current group
  /me                       your user id
  /quit
anything else is sent to the current conversation (@user_… / @all mention)";

/// The conversation lines are sent to.
#[derive(Debug)]
struct Target {
    /// `user_…` or `group_…`.
    to: String,
    conv_id: String,
    /// Oldest seq printed from history (0: none), for `/history`.
    oldest: u64,
    /// Newest seq printed: a live message at or below it was already shown by
    /// `/open` (which races with live delivery).
    newest: u64,
}

#[derive(Debug)]
struct Chat {
    client: Client,
    me: String,
    target: Option<Target>,
    /// user id -> nickname, learned from member lists.
    names: HashMap<String, String>,
    /// group id -> name.
    groups: HashMap<String, String>,
    /// Groups whose members' names were loaded.
    loaded: HashSet<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let trust = match (&args.cert, &args.fingerprint) {
        (_, Some(fingerprint)) => Trust::fingerprint_hex(fingerprint)?,
        (Some(cert), None) => Trust::CertFile(cert.clone()),
        (None, None) => bail!("give --cert or --fingerprint"),
    };
    let options = ClientOptions {
        server_name: args.server_name.clone(),
        device_id: args.device.clone(),
        ..ClientOptions::default()
    };
    let client = Client::connect_with(args.addr, trust, options)
        .await
        .with_context(|| format!("cannot connect to {}", args.addr))?;
    if args.register {
        let nickname = args.nickname.as_deref();
        client
            .register(&args.user, &args.password, nickname)
            .await
            .context("register failed (drop --register if the account exists)")?;
    } else {
        client
            .login(&args.user, &args.password)
            .await
            .context("login failed (add --register to create the account)")?;
    }
    let me = client.user_id().unwrap_or_default();
    let nickname = client.nickname().unwrap_or_default();
    println!(
        "logged in as {nickname} ({me}) on device {}; /help for commands",
        client.device_id()
    );
    let mut chat = Chat {
        names: HashMap::from([(me.clone(), nickname)]),
        client,
        me,
        target: None,
        groups: HashMap::new(),
        loaded: HashSet::new(),
    };
    // Group names for labels; members' names are loaded when a group is used.
    for group in chat.client.my_groups().await.unwrap_or_default() {
        chat.groups.insert(group.group_id, group.name);
    }

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            event = chat.client.next_event() => match event {
                Some(event) => chat.on_event(event).await,
                None => break,
            },
            line = stdin.next_line() => {
                let line = match line {
                    Ok(Some(line)) => line,
                    // End of input (or an unreadable terminal) ends the session.
                    Ok(None) | Err(_) => "/quit".to_string(),
                };
                match chat.on_line(line.trim()).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(error) => println!("! {}", describe(&error)),
                }
            }
        }
    }
    chat.client.close().await;
    Ok(())
}

impl Chat {
    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Message(message) => {
                if !message.group_id.is_empty() {
                    self.learn_group(&message.group_id, is_system(&message))
                        .await;
                }
                if let Some(target) = self.target.as_mut() {
                    if target.conv_id == message.conv_id {
                        if message.seq <= target.newest {
                            return;
                        }
                        target.newest = message.seq;
                    }
                }
                println!("{}", self.render(&message, true));
            }
            Event::SyncDone => println!("* synced"),
            Event::State(ConnectionState::Connected) => println!("* connected"),
            Event::State(ConnectionState::Reconnecting {
                attempt,
                after,
                reason,
            }) => println!(
                "* connection lost ({reason}); reconnecting in {:.1}s (attempt {attempt})",
                after.as_secs_f64()
            ),
            Event::State(ConnectionState::Closed { reason }) => println!("* closed: {reason}"),
            Event::Typing(notice) => {
                let here = self
                    .target
                    .as_ref()
                    .is_some_and(|t| t.conv_id == notice.conv_id);
                if here && notice.kind != quip_sdk::pb::TypingKind::Stopped as i32 {
                    println!("* {} is typing…", self.who(&notice.from));
                }
            }
            // Presence, receipts, calls: not shown by this example.
            _ => {}
        }
    }

    /// Handles one input line; `Ok(false)` ends the session.
    async fn on_line(&mut self, line: &str) -> anyhow::Result<bool> {
        if line.is_empty() {
            return Ok(true);
        }
        if !line.starts_with('/') {
            self.send(line).await?;
            return Ok(true);
        }
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or_default();
        let rest: Vec<String> = words.map(str::to_string).collect();
        match (command, rest.as_slice()) {
            ("/help", _) => println!("{HELP}"),
            ("/quit", _) => return Ok(false),
            ("/me", _) => println!(
                "{} username {} device {}",
                self.who(&self.me),
                self.client.username().unwrap_or_default(),
                self.client.device_id()
            ),
            ("/open", [id]) => self.open(id).await?,
            ("/history", []) => self.history(20).await?,
            ("/history", [n]) => {
                self.history(n.parse().context("/history takes a number")?)
                    .await?
            }
            ("/convs", _) => self.conversations().await?,
            ("/read", _) => self.read().await?,
            ("/groups", _) => self.list_groups().await?,
            ("/create", [name, members @ ..]) => {
                let changed = self
                    .client
                    .create_group(name, "", members, JoinMode::Open)
                    .await?;
                let group = changed.group.unwrap_or_default();
                println!("* created {} ({})", group.name, group.group_id);
                self.open(&group.group_id).await?;
            }
            ("/join", [group_id]) => {
                let changed = self.client.join_group(group_id, "").await?;
                if changed.pending_approval {
                    println!("* join request sent; an admin must approve it");
                } else {
                    self.open(group_id).await?;
                }
            }
            ("/leave", []) => {
                let group_id = self.current_group()?;
                self.client.leave_group(&group_id).await?;
                println!("* left {group_id}");
                self.target = None;
            }
            ("/invite", users @ [_, ..]) => {
                let changed = self.client.invite(&self.current_group()?, users).await?;
                let count = changed.group.map_or(0, |group| group.member_count);
                println!("* invited; the group has {count} members");
            }
            ("/members", []) => self.members().await?,
            _ => println!("! unknown command or wrong arguments: {line} (see /help)"),
        }
        Ok(true)
    }

    async fn send(&mut self, text: &str) -> anyhow::Result<()> {
        let Some(target) = &self.target else {
            bail!("no conversation open: /open <user_id|group_id> first");
        };
        let mentions: Vec<String> = text
            .split_whitespace()
            .filter_map(|word| word.strip_prefix('@'))
            .map(|word| word.trim_end_matches(|c: char| ",.:;!?".contains(c)))
            .filter(|id| ids::is_user_id(id))
            .map(str::to_string)
            .collect();
        let mention_all = text.split_whitespace().any(|word| word == "@all");
        let ack = self
            .client
            .send_text_with_mentions(&target.to, text, &mentions, mention_all)
            .await?;
        println!("  -> #{} sent", ack.seq);
        Ok(())
    }

    async fn open(&mut self, id: &str) -> anyhow::Result<()> {
        if id == self.me {
            bail!("that is you");
        }
        let conv_id = if ids::is_user_id(id) {
            ids::single_conv_id(&self.me, id)
        } else if ids::is_group_id(id) {
            self.learn_group(id, true).await;
            ids::group_conv_id(id)
        } else {
            bail!("{id:?} is neither a user_… nor a group_… id");
        };
        let page = self.client.history(&conv_id, 0, 0, 20).await?;
        let newest = page.messages.last().map_or(0, |m| m.seq);
        let oldest = page.messages.first().map_or(0, |m| m.seq);
        println!("--- {} ---", self.label(&conv_id));
        for message in &page.messages {
            println!("{}", self.render(message, false));
        }
        self.target = Some(Target {
            to: id.to_string(),
            newest,
            conv_id,
            oldest,
        });
        Ok(())
    }

    async fn history(&mut self, limit: u32) -> anyhow::Result<()> {
        let Some(target) = &self.target else {
            bail!("no conversation open");
        };
        // `/open` showed the newest page, so 0 means the conversation was empty.
        if target.oldest <= 1 {
            println!("(no older messages)");
            return Ok(());
        }
        let (conv_id, before) = (target.conv_id.clone(), target.oldest);
        let page = self
            .client
            .history(&conv_id, before, 0, limit.clamp(1, 200))
            .await?;
        for message in &page.messages {
            println!("{}", self.render(message, false));
        }
        if !page.has_more {
            println!("(start of conversation)");
        }
        if let (Some(target), Some(first)) = (&mut self.target, page.messages.first()) {
            target.oldest = first.seq;
        }
        Ok(())
    }

    async fn conversations(&mut self) -> anyhow::Result<()> {
        let list = self.client.conversations("", 50).await?;
        if list.conversations.is_empty() {
            println!("(no conversations)");
        }
        for conv in &list.conversations {
            let preview = conv
                .last_message
                .as_ref()
                .map(content_text)
                .unwrap_or_default();
            println!(
                "{} {:<40} {:>3} unread  {}",
                if conv.mentioned { "@" } else { " " },
                self.label(&conv.conv_id),
                conv.unread,
                preview.chars().take(40).collect::<String>()
            );
        }
        Ok(())
    }

    async fn read(&mut self) -> anyhow::Result<()> {
        let Some(target) = &self.target else {
            bail!("no conversation open");
        };
        // The cursor also covers this device's own sends.
        let seq = target.newest.max(self.client.cursor(&target.conv_id));
        if seq == 0 {
            println!("(nothing to mark read)");
            return Ok(());
        }
        self.client.mark_read(&target.conv_id, seq).await?;
        println!("* read up to #{seq}");
        Ok(())
    }

    async fn list_groups(&mut self) -> anyhow::Result<()> {
        let groups = self.client.my_groups().await?;
        if groups.is_empty() {
            println!("(no groups; /create <name> or /join <group_id>)");
        }
        for group in groups {
            println!(
                "{}  {:<20} {:>4} members  {} {}{}",
                group.group_id,
                group.name,
                group.member_count,
                group.join_mode().as_str_name().to_lowercase(),
                role_name(group.my_role()),
                if group.mute_all { "  (muted)" } else { "" }
            );
            self.groups.entry(group.group_id).or_insert(group.name);
        }
        Ok(())
    }

    async fn members(&mut self) -> anyhow::Result<()> {
        let page = self
            .client
            .group_members(&self.current_group()?, "", 500)
            .await?;
        for member in page.members {
            let muted = if member.muted_until_ms > 0 {
                " (muted)"
            } else {
                ""
            };
            let role = role_name(member.role());
            println!(
                "{:<24} {:<20} {role}{muted}",
                member.user_id, member.nickname
            );
            self.names.insert(member.user_id, member.nickname);
        }
        if !page.next_after_user_id.is_empty() {
            println!("(first 500 members shown)");
        }
        Ok(())
    }

    fn current_group(&self) -> anyhow::Result<String> {
        match &self.target {
            Some(target) if ids::is_group_id(&target.to) => Ok(target.to.clone()),
            _ => bail!("open a group first (/open <group_id>)"),
        }
    }

    /// Loads a group's name and members' nicknames the first time it is seen, and
    /// again after SYSTEM messages (`refresh`), which announce membership changes.
    /// Failures (e.g. we were just removed) only cost the names.
    async fn learn_group(&mut self, group_id: &str, refresh: bool) {
        if !self.loaded.insert(group_id.to_string()) && !refresh {
            return;
        }
        if let Ok(info) = self.client.group_info(group_id).await {
            self.groups.insert(group_id.to_string(), info.name);
        }
        if let Ok(page) = self.client.group_members(group_id, "", 500).await {
            for member in page.members {
                self.names.insert(member.user_id, member.nickname);
            }
        }
    }

    /// `Nickname (user_id)` when the nickname is known, else the id.
    fn who(&self, user_id: &str) -> String {
        match self.names.get(user_id) {
            Some(name) if !name.is_empty() => format!("{name} ({user_id})"),
            _ => user_id.to_string(),
        }
    }

    fn label(&self, conv_id: &str) -> String {
        match ids::Conversation::parse(conv_id) {
            Some(ids::Conversation::Group { group_id }) => match self.groups.get(group_id) {
                Some(name) => format!("{name} ({group_id})"),
                None => group_id.to_string(),
            },
            Some(conversation) => {
                format!(
                    "dm {}",
                    self.who(conversation.peer_of(&self.me).unwrap_or(conv_id))
                )
            }
            None => conv_id.to_string(),
        }
    }

    /// One message as a line: `[conversation] #seq hh:mm:ss sender: text`; live
    /// messages name the conversation, history lines only the seq.
    fn render(&self, message: &pb::Message, live: bool) -> String {
        let mut line = String::new();
        if live {
            line.push_str(&format!("[{}] ", self.label(&message.conv_id)));
        }
        line.push_str(&format!("#{} {} ", message.seq, clock(message.sent_at_ms)));
        if is_system(message) {
            line.push_str(&format!("* {}", content_text(message)));
            return line;
        }
        let sender = if message.from == self.me {
            "me".to_string()
        } else {
            self.who(&message.from)
        };
        if let Some(pb::message::Content::Text(text)) = &message.content {
            let mentioned = text.mention_all || text.mention_user_ids.contains(&self.me);
            if mentioned && message.from != self.me {
                line.push_str("(@you) ");
            }
        }
        line.push_str(&format!("{sender}: {}", content_text(message)));
        line
    }
}

/// An error and its causes on one line, skipping causes their wrapper already shows
/// (`broker refused: X` wraps `X`).
fn describe(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn is_system(message: &pb::Message) -> bool {
    message.kind() == pb::MessageKind::System
}

fn content_text(message: &pb::Message) -> String {
    if message.recalled {
        return "[recalled]".to_string();
    }
    match &message.content {
        Some(pb::message::Content::Text(text)) => text.text.clone(),
        Some(pb::message::Content::System(system)) => system.text.clone(),
        Some(pb::message::Content::File(file)) => {
            format!("[file {} ({} bytes)]", file.name, file.size)
        }
        Some(pb::message::Content::Custom(custom)) => format!("[custom {}]", custom.json),
        Some(pb::message::Content::Amendment(change)) => {
            format!("[changes message #{}]", change.target_seq)
        }
        None => String::new(),
    }
}

fn role_name(role: GroupRole) -> String {
    role.as_str_name().to_lowercase()
}

/// `hh:mm:ss` UTC of a Unix-millisecond time.
fn clock(ms: u64) -> String {
    let secs = ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}
