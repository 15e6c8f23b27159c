import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Starts child processes with posix_spawn and learns of their exit with waitpid.
///
/// The child gets /dev/null as stdin, the given descriptors as stdout and stderr, and no other descriptor
/// (closefrom 3), its own process group (so a timeout can signal everything it started), an empty signal
/// mask and default signal dispositions. Nothing it leaves behind (a postmaster) can delay the exit report.
enum Spawner {
    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32

    /// Spawns `path` with `argv` (argv[0] included) and `environment` (`KEY=value`); returns the pid. Standard
    /// input is /dev/null unless `stdin` is given.
    ///
    /// With `executable`, an open descriptor of the file to run (checked by the caller), `path` is ignored:
    /// the child gets that descriptor as fd 3 and executes `/proc/self/fd/3`, the very file that was checked
    /// (a script's interpreter reads it through the same descriptor), whatever happened to its path since.
    static func spawn(
        _ path: String, _ argv: [String], environment: [String], workingDirectory: String, stdin: Int32? = nil, stdout: Int32,
        stderr: Int32, commandLine: String, executable: Int32? = nil
    ) throws -> pid_t {
        // glibc has both since 2.34 and 2.29, but Swift's Glibc module does not declare these _np functions.
        guard let closeFromSymbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np"),
            let chdirSymbol = dlsym(nil, "posix_spawn_file_actions_addchdir_np")
        else {
            throw FailoverError.failed(
                "this C library lacks posix_spawn_file_actions_addclosefrom_np/addchdir_np (glibc 2.34 or later is needed)")
        }
        let closeFrom = unsafeBitCast(closeFromSymbol, to: CloseFrom.self)
        let addChdir = unsafeBitCast(chdirSymbol, to: AddChdir.self)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        var failures: [Int32] = [
            stdin.map { posix_spawn_file_actions_adddup2(&actions, $0, 0) }
                ?? posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0),
            posix_spawn_file_actions_adddup2(&actions, stdout, 1),
            posix_spawn_file_actions_adddup2(&actions, stderr, 2),
        ]
        if let executable { failures.append(posix_spawn_file_actions_adddup2(&actions, executable, 3)) }
        failures += [
            closeFrom(&actions, executable == nil ? 3 : 4),
            addChdir(&actions, workingDirectory),
        ]
        let path = executable == nil ? path : "/proc/self/fd/3"
        var mask = sigset_t()
        sigemptyset(&mask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM] { sigaddset(&defaults, signal) }
        failures += [
            posix_spawnattr_setsigmask(&attributes, &mask),
            posix_spawnattr_setsigdefault(&attributes, &defaults),
            posix_spawnattr_setpgroup(&attributes, 0),
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)),
        ]
        if let failure = failures.first(where: { $0 != 0 }) {
            throw FailoverError.failed("could not prepare to launch `\(commandLine)`: \(String(cString: strerror(failure)))")
        }

        let cArguments = argv.map { strdup($0) } + [nil]
        let cEnvironment = environment.map { strdup($0) } + [nil]
        defer {
            cArguments.forEach { free($0) }
            cEnvironment.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &actions, &attributes, cArguments, cEnvironment)
        guard result == 0 else {
            throw FailoverError.failed(
                "could not launch `\(commandLine)`: \(String(cString: strerror(result))). Check that \(path) exists and is executable, and that \(workingDirectory) exists."
            )
        }
        return pid
    }

    /// How a child process ended.
    enum Termination: Sendable, Equatable {
        /// It exited with this status.
        case exited(Int32)
        /// This signal killed it.
        case signalled(Int32)

        /// The exit status, or 128 + the signal that killed it, as a shell reports it.
        var status: Int32 {
            switch self {
            case .exited(let code): code
            case .signalled(let signal): 128 + signal
            }
        }
    }

    /// Blocks the calling thread until `pid` exits; calls `onExit` before reaping it (so the pid cannot have been
    /// reused while `onExit` runs), then returns how it ended. Run it on a thread of ``Blocking`` (as
    /// ``ChildProcess`` does), never on one of the cooperative pool.
    static func reap(_ pid: pid_t, onExit: () -> Void = {}) -> Termination {
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) == -1 && errno == EINTR {}
        onExit()
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let signal = status & 0x7f
        return signal == 0 ? .exited((status >> 8) & 0xff) : .signalled(signal)
    }
}
