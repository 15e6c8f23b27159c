import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// File operations that leave what they write owned by the PostgreSQL OS user.
enum Files {
    /// Writes `text` to `path` atomically (a temporary file in the same directory, then rename), with `mode`,
    /// owned by `owner` when this process is root.
    static func write(_ text: String, to path: String, mode: mode_t = 0o600, owner: OSUser?) throws {
        let temporary = path + ".failoverd-tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8)) else {
            throw FailoverError.failed("could not write \(temporary): check that \((path as NSString).deletingLastPathComponent) exists and is writable")
        }
        chmod(temporary, mode)
        try owner?.own(temporary)
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw FailoverError.failed("could not replace \(path): \(reason)")
        }
    }

    /// The text of `path`, or nil when it does not exist.
    static func read(_ path: String) -> String? {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// True when `path` exists.
    static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    /// Creates `path` (and missing parents) with `mode`, giving every directory it creates to `owner`.
    /// Returns the directories it created, outermost first.
    @discardableResult
    static func makeDirectory(_ path: String, mode: mode_t = 0o700, owner: OSUser?) throws -> [String] {
        var missing: [String] = []
        var cursor = path
        while !cursor.isEmpty && cursor != "/" && !exists(cursor) {
            missing.insert(cursor, at: 0)
            cursor = (cursor as NSString).deletingLastPathComponent
        }
        for dir in missing {
            if mkdir(dir, dir == path ? mode : 0o755) != 0 && errno != EEXIST {
                throw FailoverError.failed("could not create directory \(dir): \(String(cString: strerror(errno)))")
            }
            chmod(dir, dir == path ? mode : 0o755)
            try owner?.own(dir)
        }
        return missing
    }

    /// The last `count` lines of a text file, joined with ` | `, for error messages.
    static func tail(_ path: String, lines count: Int = 8) -> String {
        guard let text = read(path) else { return "" }
        return text.split(separator: "\n").suffix(count).joined(separator: " | ")
    }
}
