//! What the tool prints: results on stdout, progress and errors on stderr.

/// `-q` and `-v`.
pub(crate) struct Out {
    quiet: bool,
    verbose: u8,
}

impl Out {
    pub(crate) fn new(quiet: bool, verbose: u8) -> Self {
        Self { quiet, verbose }
    }

    /// A line of the result (stdout), unless `-q`.
    pub(crate) fn say(&self, line: &str) {
        if !self.quiet {
            println!("{line}");
        }
    }

    /// Data a script reads (stdout), even with `-q`.
    pub(crate) fn data(&self, text: &str) {
        println!("{text}");
    }

    /// A step under way (stderr), unless `-q`.
    pub(crate) fn step(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    /// With `-v`: each request; with `-vv`: also the answers.
    pub(crate) fn trace(&self, level: u8, line: &str) {
        if self.verbose >= level {
            eprintln!("{line}");
        }
    }

    pub(crate) fn quiet(&self) -> bool {
        self.quiet
    }

    /// A progress bar over `total` bytes on stderr: hidden with `-q`, and drawn only on a
    /// terminal (indicatif's default), so logs and pipes get the summary line alone.
    pub(crate) fn upload_bar(&self, total: u64, message: String) -> indicatif::ProgressBar {
        let bar = indicatif::ProgressBar::new(total);
        if self.quiet {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_message(message);
        bar
    }

    pub(crate) fn error(&self, message: &str) {
        eprintln!("error: {message}");
    }
}
