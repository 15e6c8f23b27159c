extension PlanValidator {
    /// Pass 7: the coordination store's settings belong together: one scheme for every endpoint, a CA only
    /// for https, a client certificate with its key, each endpoint once.
    static func checkCoordination(_ root: JSONValue, into problems: inout [PlanProblem]) {
        guard let etcd = root["coordination"]?["etcd"] else { return }
        let path = JSONPath.root.appending("coordination").appending("etcd")
        let endpoints = (etcd["endpoints"]?.arrayValue ?? []).compactMap(\.stringValue)
        let schemes = Set(endpoints.map { $0.hasPrefix("https://") ? "https" : "http" })
        if schemes.count > 1 {
            problems.append(
                .error(
                    path.appending("endpoints"), "coordination.etcd: endpoints mix http and https",
                    hint: "Name every member by the scheme its client endpoint serves: all https (with caFile) or all http."))
        }
        if etcd["caFile"] != nil, schemes == ["http"] {
            problems.append(
                .error(
                    path.appending("caFile"), "coordination.etcd: caFile given for http endpoints",
                    hint: "Use https:// endpoints with a CA, or remove caFile."))
        }
        if (etcd["certFile"] == nil) != (etcd["keyFile"] == nil) {
            problems.append(
                .error(
                    path.appending(etcd["certFile"] == nil ? "certFile" : "keyFile"),
                    "coordination.etcd: a client certificate needs both certFile and keyFile",
                    hint: "Name the certificate in certFile and its key in keyFile, or neither."))
        }
        if Set(endpoints).count != endpoints.count {
            problems.append(
                .error(
                    path.appending("endpoints"), "coordination.etcd: an endpoint is listed twice",
                    hint: "List each member's client URL once."))
        }
    }
}
