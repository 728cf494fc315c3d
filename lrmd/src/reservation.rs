//! The network and disk parts of a reservation as the resource kernel takes them.

use sesco_proto::session::{IoReservation, NetReservation};

/// The interface of the default IPv4 route (`/proc/net/route`), when there is one.
pub fn default_route_interface(route_table: &str) -> Option<String> {
    route_table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"00000000") && f.get(7) == Some(&"00000000")).then(|| f[0].to_string())
    })
}

/// Egress limits; an empty interface means the node's default-route interface (left
/// empty, so that rk refuses it by name, when the node has no default route).
pub fn net_limits(net: &[NetReservation]) -> Vec<rk::NetLimit> {
    let default = || {
        std::fs::read_to_string("/proc/net/route")
            .ok()
            .and_then(|t| default_route_interface(&t))
            .unwrap_or_default()
    };
    net.iter()
        .map(|n| rk::NetLimit {
            interface: if n.interface.is_empty() {
                default()
            } else {
                n.interface.clone()
            },
            egress_bps: (n.egress_mbps * 1e6).round().max(0.0) as u64,
        })
        .collect()
}

/// I/O limits on `/dev/DEVICE`.
pub fn io_limits(io: &[IoReservation]) -> Vec<rk::IoLimit> {
    io.iter()
        .map(|d| rk::IoLimit {
            device: std::path::Path::new("/dev").join(&d.device),
            read_bps: d.read_bytes_per_sec,
            write_bps: d.write_bytes_per_sec,
            read_iops: d.read_iops,
            write_iops: d.write_iops,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_route_names_its_interface() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     eth1\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_route_interface(table).as_deref(), Some("eth1"));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
    }

    #[test]
    fn rates_and_devices_convert() {
        let net = net_limits(&[NetReservation {
            interface: "veth1".into(),
            egress_mbps: 12.5,
        }]);
        assert_eq!(net[0].egress_bps, 12_500_000);
        let io = io_limits(&[IoReservation {
            device: "loop3".into(),
            write_bytes_per_sec: Some(5_000_000),
            ..Default::default()
        }]);
        assert_eq!(io[0].device, std::path::PathBuf::from("/dev/loop3"));
        assert_eq!(io[0].write_bps, Some(5_000_000));
    }
}
