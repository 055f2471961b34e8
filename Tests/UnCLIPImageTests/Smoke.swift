import XCTest
@testable import UnCLIPImage

final class UnCLIPImageSmokeTests: XCTestCase {
    func testBuilds() {}
}
