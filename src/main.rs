use clap::Parser;

// The import path allocates and frees millions of small strings across threads; mimalloc handles
// that pattern far better than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = ctem::cli::Cli::parse();
    match ctem::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("ctem: {e}");
            std::process::exit(1);
        }
    }
}
