import Foundation

/// Scratch files and folders, one per process and name (in /dev/shm when there is one), rewritten for every input,
/// for the readers that take a path as the CLI's do.
public enum FuzzFile {
    static let directory = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()

    static func url(_ name: String) -> URL {
        URL(fileURLWithPath: directory).appendingPathComponent("unclip-fuzz-\(getpid())-\(name)")
    }

    public static func write(_ data: UnsafePointer<UInt8>, _ size: Int, name: String) -> URL {
        let url = url(name)
        try? Data(bytes: data, count: size).write(to: url)
        return url
    }

    /// An empty folder (the previous input's files removed).
    public static func folder(name: String) -> URL {
        let url = url(name)
        try? FileManager.default.removeItem(at: url)
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// Runs async code to its end from libFuzzer's synchronous callback.
public enum FuzzAsync {
    private final class Box<T>: @unchecked Sendable { var value: T? }

    public static func wait<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
        let done = DispatchSemaphore(value: 0)
        let box = Box<T>()
        Task { box.value = await body(); done.signal() }
        done.wait()
        return box.value!
    }
}

/// With UNCLIP_FUZZ_VERBOSE set, each input's outcome is printed (to see which seeds pass and what refuses the rest).
public enum FuzzLog {
    public static let verbose = getenv("UNCLIP_FUZZ_VERBOSE") != nil

    public static func outcome(_ what: String, _ body: () throws -> Void) {
        do {
            try body()
            if verbose { print("\(what): accepted") }
        } catch {
            if verbose { print("\(what): \(error)") }
        }
    }
}
