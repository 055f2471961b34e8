import XCTest
@testable import UnCLIPNN

final class UnCLIPNNSmokeTests: XCTestCase {
    func testBuilds() {}
}
