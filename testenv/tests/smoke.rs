use regcred_testenv::ControlPlane;

#[tokio::test]
async fn starts_and_stops() {
    let cp = ControlPlane::start().await.expect("control plane starts");
    let client = cp.client().await.unwrap();
    let v = client.apiserver_version().await.unwrap();
    assert_eq!(v.minor, "34");
    let pids = cp.pids();
    drop(cp);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still running after drop"
        );
    }
}
