//! Compiles `proto/quip/v1/*.proto` with protox (pure Rust, no `protoc` needed) and
//! prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/quip/v1/error.proto",
        "proto/quip/v1/call.proto",
        "proto/quip/v1/file.proto",
        "proto/quip/v1/message.proto",
        "proto/quip/v1/auth.proto",
        "proto/quip/v1/chat.proto",
        "proto/quip/v1/group.proto",
        "proto/quip/v1/presence.proto",
        "proto/quip/v1/receipt.proto",
        "proto/quip/v1/contact.proto",
        "proto/quip/v1/account.proto",
        "proto/quip/v1/admin.proto",
        "proto/quip/v1/frame.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
