import XCTest
@testable import UnCLIPModels

final class UnCLIPModelsSmokeTests: XCTestCase {
    func testBuilds() {}
}
