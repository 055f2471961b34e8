import Foundation
import UnCLIPModels
@testable import UnCLIPServer
import XCTest

/// Which size the model draws for a request's square: the model's default unless `--max-draw-size` allows more.
final class DrawSizeTests: XCTestCase {
    func testRequestsDrawTheModelsDefaultUnlessALargerSizeIsAllowed() throws {
        let sizes = sharedModel.imageSizes
        XCTAssertEqual(sizes, [32, 128, 512], "the embedded model's decoder and two upsamplers")
        let plain = try makeService()
        for side in [256, 512, 1024] { XCTAssertEqual(plain.drawSize(for: side), 128, "default for \(side)") }
        let large = try makeService { $0.maxDrawSize = 512 }
        for side in [256, 512, 1024] { XCTAssertEqual(large.drawSize(for: side), 512, "--max-draw-size 512 for \(side)") }
        let small = try makeService { $0.maxDrawSize = 32 }
        XCTAssertEqual(small.drawSize(for: 256), 32)
    }
}
