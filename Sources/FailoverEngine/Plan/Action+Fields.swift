extension Action {
    /// The transition fields this action takes besides `action`, all required, e.g. `site` and `upstream`
    /// for enable-streaming; any other transition field on it is an error.
    public var requiredFields: [String] {
        switch self {
        case .bootstrapStandby, .disableStreaming, .fence, .rebuild: ["site"]
        case .enableStreaming: ["site", "upstream"]
        case .switchover, .failover: ["to"]
        case .rewind: ["site", "source"]
        case .failback: ["to", "method"]
        }
    }
}
