use clap::Parser;

// The import path allocates and frees millions of small strings across threads; mimalloc handles
// that pattern far better than the system allocator. With its `override` feature it is also the
// process's `malloc`, so the embedded engine's C++ allocations go through it too: under glibc's
// allocator the engine's freed blocks stayed in its heaps, and allocating them cost system time.
// Its version 2 (the `v2` feature) hands freed memory back after about 100 ms where version 3 waits a
// second, which an import's peak memory shows (2 GB Nessus file at the same engine cap: 374-399 MB
// against 422-488 MB).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Output piped into `head` and closed early ends the process quietly, as other command-line tools do,
    // instead of a panic on the failed write.
    // SAFETY: called before any thread starts; restores the default disposition of one signal.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = ctem::cli::Cli::parse();
    match ctem::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("ctem: {e}");
            std::process::exit(1);
        }
    }
}
