import Foundation
import Hummingbird
import HummingbirdTesting
import UnCLIPModels
@testable import UnCLIPServer
import XCTest

/// What a hostile client could try against the server (issue 20, point 6): guessing ids, climbing out of the file
/// routes, steering uploads onto the disk, timing the key check, and racing the `url` store's byte cap.
final class SecurityTests: XCTestCase {
    func testFileRoutesServeNothingButTheStoresOwnFiles() async throws {
        let service = try makeService()
        let app = makeApp(service)
        // A file beside the store's directory, and a symlink to it inside the directory under a valid id's name.
        let secret = service.files.directory.deletingLastPathComponent().appendingPathComponent("secret-\(UUID().uuidString).png")
        try Data("not for clients".utf8).write(to: secret)
        defer { try? FileManager.default.removeItem(at: secret) }
        let planted = FileStore.newID()
        try FileManager.default.createSymbolicLink(at: service.files.directory.appendingPathComponent("\(planted).png"),
                                                   withDestinationURL: secret)
        let stored = try service.files.save(Data([0x89, 0x50, 0x4E, 0x47]))
        try await app.test(.router) { client in
            let ok = try await client.get("/v1/images/files/\(stored).png")
            XCTAssertEqual(ok.status, .ok)
            for path in ["../\(secret.lastPathComponent)", "..%2F\(secret.lastPathComponent)", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                         "..%5c..%5cetc%5cpasswd", "\(stored.uppercased()).png", "\(stored).png%00", "\(stored)", ".\(stored).tmp",
                         "\(planted).png", "%2F" + "etc%2Fpasswd", String(repeating: "0", count: 32) + ".png"] {
                let response = try await client.get("/v1/images/files/\(path)")
                XCTAssertEqual(response.status, .notFound, path)
                XCTAssertFalse(String(buffer: response.body).contains("not for clients"), path)
            }
            // Paths that leave the route altogether reach no file either.
            for path in ["/v1/images/files/../../Package.swift", "/v1/images/../../etc/passwd", "/web/../Package.swift"] {
                let response = try await client.get(path)
                XCTAssertNotEqual(response.status, .ok, path)
            }
        }
        // The symlink's target is untouched by a sweep (only the link, which is not ours to serve, may go).
        service.files.sweep()
        XCTAssertEqual(try Data(contentsOf: secret), Data("not for clients".utf8))
    }

    func testUploadsNeverReachTheDiskWhateverTheirFileNames() async throws {
        let service = try makeService()
        let app = makeApp(service)
        let directory = service.files.directory
        let before = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        let png = try testPNG(side: 64)
        try await app.test(.router) { client in
            for name in ["../../escaped.png", "/tmp/escaped-\(UUID().uuidString).png", "..\\..\\escaped.png", "a\u{0}b.png"] {
                var form = Multipart()
                form.file("image", png, filename: name)
                form.field("n", "1")
                form.field("steps", "2")
                form.field("response_format", "b64_json")
                let response = try await client.post("/v1/images/variations", form: form)
                XCTAssertEqual(response.status, .ok, name)
            }
        }
        // b64_json answers write nothing; the upload's name was never used as a path.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), before)
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("escaped.png").path))
    }

    func testIdsAreUnguessable() {
        // 128 bits from the system's generator: 32 hex digits, no repeats, every digit used in every position.
        let ids = (0..<2000).map { _ in FileStore.newID() }
        XCTAssertEqual(Set(ids).count, ids.count)
        XCTAssertTrue(ids.allSatisfy { $0.count == 32 && FileStore.isValidID($0) })
        for position in [0, 15, 16, 31] {
            let digits = Set(ids.map { Array($0)[position] })
            XCTAssertEqual(digits.count, 16, "position \(position) uses \(digits.count) of 16 hex digits")
        }
    }

    func testTheKeyCheckComparesEveryByteOfEveryKey() {
        let middleware = APIKeyMiddleware<ServerRequestContext>(keys: ["sk-first-0123456789", "sk-second-abcdef"])
        XCTAssertTrue(middleware.accepts(Array("sk-first-0123456789".utf8)))
        XCTAssertTrue(middleware.accepts(Array("sk-second-abcdef".utf8)))
        for wrong in ["", "sk-first-012345678", "sk-first-01234567890", "sk-first-0123456788", "tk-first-0123456789",
                      "sk-second-abcdeF", "sk-first-0123456789\u{0}"] {
            XCTAssertFalse(middleware.accepts(Array(wrong.utf8)), wrong)
        }
        // Constant time: a key that differs in its first byte takes as long to refuse as one that differs in its
        // last (the loop reads every byte of every key either way); measured over many tries, the medians agree.
        let key = String(repeating: "k", count: 4096)
        let checker = APIKeyMiddleware<ServerRequestContext>(keys: [key])
        let first = Array(("x" + key.dropFirst()).utf8), last = Array((key.dropLast() + "x").utf8)
        func median(_ given: [UInt8]) -> Double {
            var times: [Double] = []
            for _ in 0..<301 {
                let start = DispatchTime.now().uptimeNanoseconds
                XCTAssertFalse(checker.accepts(given))
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start))
            }
            return times.sorted()[150]
        }
        _ = median(first)  // warm-up
        let early = median(first), late = median(last)
        XCTAssertLessThan(abs(early - late) / max(early, late), 0.5, "first-byte \(early) ns, last-byte \(late) ns")
    }

    func testTheByteCapHoldsUnderConcurrentWrites() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-cap-\(UUID().uuidString)")
        let store = try FileStore(directory: directory, byteLimit: 20_000)
        let size = 1000
        DispatchQueue.concurrentPerform(iterations: 400) { i in
            do { _ = try store.save(Data(repeating: UInt8(i % 256), count: size)) } catch { XCTFail("save \(i): \(error)") }
        }
        store.sweep()
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        XCTAssertTrue(names.allSatisfy { $0.hasSuffix(".png") }, "temporaries left: \(names.filter { !$0.hasSuffix(".png") })")
        let onDisk = names.count * size
        XCTAssertGreaterThan(onDisk, 0)
        XCTAssertLessThanOrEqual(onDisk, 20_000)
        XCTAssertEqual(store.bytes, onDisk, "the store's count and the disk agree")
        for name in names { XCTAssertEqual(store.read(String(name.dropLast(4)))?.count, size) }
    }
}
