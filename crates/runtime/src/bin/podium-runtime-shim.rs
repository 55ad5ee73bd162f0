//! A standalone shim binary (`podium-runtime-shim [shim] ARGS`), the same code as
//! `podium shim`; used by this crate's integration tests.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match args.first() {
        Some(a) if a == "shim" => &args[1..],
        _ => &args[..],
    };
    std::process::exit(podium_runtime::shim_main(args));
}
