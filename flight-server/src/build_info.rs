//! Which build of Quiver this is: `quiver --version`, and the warning `quiver serve` gives when it
//! runs an unoptimised build.

/// The version with the kind of build: `0.1.0 (release build)`, or `0.1.0 (debug build,
/// unoptimised)` for the development build, which runs many times slower.
pub const VERSION: &str = if OPTIMISED {
    concat!(env!("CARGO_PKG_VERSION"), " (release build)")
} else {
    concat!(env!("CARGO_PKG_VERSION"), " (debug build, unoptimised)")
};

/// Whether this is an optimised (release) build.
pub const OPTIMISED: bool = !cfg!(debug_assertions);

/// What `quiver serve` prints at start in a development build.
pub const DEBUG_BUILD_WARNING: &str = "WARNING: this quiver is a debug build (unoptimised, many \
    times slower than a release build); install the release binary with scripts/install.sh";
