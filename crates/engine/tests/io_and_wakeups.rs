//! The poller, fd registry and waker working together on real descriptors.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ferroloop_engine::{Direction, IoRegistry, Poller, Waker};

fn ready_fds(poller: &Poller) -> Vec<(i32, bool, bool)> {
    poller
        .ready()
        .map(|r| (r.fd, r.readable, r.writable))
        .collect()
}

#[test]
fn data_and_hangup_arriving_together_report_the_hangup() {
    let mut poller = Poller::new().unwrap();
    let mut registry = IoRegistry::new(poller.registry().unwrap());
    let (mut a, b) = UnixStream::pair().unwrap();
    registry.insert_pair(b.as_raw_fd(), (), ()).unwrap();
    a.write_all(b"last words").unwrap();
    drop(a);
    poller.poll(Some(Duration::from_secs(5))).unwrap();
    let ready: Vec<_> = poller.ready().collect();
    assert_eq!(ready.len(), 1);
    assert!(ready[0].readable && ready[0].hangup);
}

#[test]
fn reader_is_called_again_while_data_is_left_unread() {
    let mut poller = Poller::new().unwrap();
    let mut registry = IoRegistry::new(poller.registry().unwrap());
    let (mut a, mut b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let fd = b.as_raw_fd();
    registry.insert(fd, Direction::Read, "reader").unwrap();

    poller.poll(Some(Duration::ZERO)).unwrap();
    assert!(ready_fds(&poller).is_empty());

    a.write_all(b"0123456789").unwrap();
    for _ in 0..3 {
        poller.poll(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(ready_fds(&poller), vec![(fd, true, false)]);
        // The watcher reads only part of the data, like a reader callback
        // that consumes one record per call.
        let mut buf = [0u8; 2];
        b.read_exact(&mut buf).unwrap();
        registry.rearm(fd);
    }
    let mut rest = [0u8; 4];
    b.read_exact(&mut rest).unwrap();
    registry.rearm(fd);
    poller.poll(Some(Duration::ZERO)).unwrap();
    assert!(
        ready_fds(&poller).is_empty(),
        "drained descriptor must not be reported"
    );
}

#[test]
fn reader_and_writer_share_one_registration() {
    let mut poller = Poller::new().unwrap();
    let mut registry = IoRegistry::new(poller.registry().unwrap());
    let (a, _b) = UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    registry.insert(fd, Direction::Read, 1).unwrap();
    assert_eq!(registry.insert(fd, Direction::Write, 2).unwrap(), None);
    assert_eq!(registry.insert(fd, Direction::Write, 3).unwrap(), Some(2));
    poller.poll(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(ready_fds(&poller), vec![(fd, false, true)]);
    assert_eq!(registry.remove(fd, Direction::Write), Some(3));
    assert_eq!(registry.get(fd, Direction::Read), Some(&1));
    assert_eq!(registry.remove(fd, Direction::Write), None);
    assert_eq!(registry.remove(fd, Direction::Read), Some(1));
    assert!(registry.is_empty());
}

#[test]
fn hangup_wakes_the_reader() {
    let mut poller = Poller::new().unwrap();
    let mut registry = IoRegistry::new(poller.registry().unwrap());
    let (a, b) = UnixStream::pair().unwrap();
    registry.insert(b.as_raw_fd(), Direction::Read, ()).unwrap();
    drop(a);
    poller.poll(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(ready_fds(&poller).len(), 1);
    assert!(ready_fds(&poller)[0].1);
    assert!(poller.ready().next().unwrap().hangup);
}

#[test]
fn closed_and_reused_descriptor_can_be_watched_again() {
    let poller = Poller::new().unwrap();
    let mut registry = IoRegistry::new(poller.registry().unwrap());
    let (a, b) = UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    registry.insert(fd, Direction::Read, "old").unwrap();
    drop(a);
    drop(b);
    // The number is free again; the next socket will likely reuse it.
    let (c, _d) = UnixStream::pair().unwrap();
    if c.as_raw_fd() == fd {
        assert_eq!(registry.insert(fd, Direction::Write, "new").unwrap(), None);
        assert_eq!(registry.remove(fd, Direction::Read), Some("old"));
    }
}

#[test]
fn watching_a_closed_descriptor_fails_and_changes_nothing() {
    let poller = Poller::new().unwrap();
    let mut registry: IoRegistry<()> = IoRegistry::new(poller.registry().unwrap());
    let err = registry.insert(100_000, Direction::Read, ()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    assert!(registry.is_empty());
}

#[test]
fn timeouts_are_rounded_up_never_down() {
    let mut poller = Poller::new().unwrap();
    for micros in [1u64, 300, 1500] {
        let start = Instant::now();
        poller.poll(Some(Duration::from_micros(micros))).unwrap();
        assert!(start.elapsed() >= Duration::from_micros(micros));
    }
}

#[test]
fn another_thread_wakes_a_sleeping_poll() {
    let mut poller = Poller::new().unwrap();
    let waker = Waker::new(&poller.registry().unwrap()).unwrap();
    let queue = Arc::new(Mutex::new(VecDeque::new()));

    let producer = {
        let (waker, queue) = (waker.clone(), queue.clone());
        thread::spawn(move || {
            for i in 0..1000 {
                queue.lock().unwrap().push_back(i);
                waker.wake().unwrap();
                if i % 100 == 0 {
                    thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };

    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.len() < 1000 {
        assert!(
            Instant::now() < deadline,
            "lost wake-up: stuck at {}",
            received.len()
        );
        waker.prepare_to_sleep();
        let timeout = if queue.lock().unwrap().is_empty() {
            Some(Duration::from_secs(10))
        } else {
            Some(Duration::ZERO)
        };
        poller.poll(timeout).unwrap();
        waker.finish_sleep();
        received.extend(queue.lock().unwrap().drain(..));
    }
    producer.join().unwrap();
    assert_eq!(received, (0..1000).collect::<Vec<_>>());
}

#[test]
fn wake_without_a_sleeper_costs_no_write() {
    let mut poller = Poller::new().unwrap();
    let waker = Waker::new(&poller.registry().unwrap()).unwrap();
    waker.wake().unwrap();
    poller.poll(Some(Duration::ZERO)).unwrap();
    assert!(!poller.woken());
    waker.prepare_to_sleep();
    waker.wake().unwrap();
    poller.poll(Some(Duration::from_secs(5))).unwrap();
    assert!(poller.woken());
    assert!(waker.finish_sleep());
}

#[test]
fn a_pair_of_watchers_registers_and_leaves_together() {
    let mut poller = Poller::new().unwrap();
    let mut registry = IoRegistry::new(poller.registry().unwrap());
    let (mut a, b) = UnixStream::pair().unwrap();
    let fd = b.as_raw_fd();
    assert_eq!(registry.insert_pair(fd, "t", "t").unwrap(), (None, None));
    a.write_all(b"x").unwrap();
    poller.poll(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(ready_fds(&poller), vec![(fd, true, true)]);
    assert_eq!(registry.remove_pair(fd), (Some("t"), Some("t")));
    assert!(registry.is_empty());
    a.write_all(b"y").unwrap();
    poller.poll(Some(Duration::ZERO)).unwrap();
    assert!(ready_fds(&poller).is_empty());
}

#[test]
fn a_number_that_names_no_file_is_refused_and_not_stored() {
    let poller = Poller::new().unwrap();
    let mut registry = IoRegistry::new(poller.registry().unwrap());
    for fd in [i32::MAX, 10_000_000, 65_536] {
        let err = registry.insert(fd, Direction::Read, 1).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(EBADF));
        let err = registry.insert_pair(fd, 1, 2).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(EBADF));
    }
    assert!(registry.is_empty());
    assert_eq!(registry.iter().count(), 0);
}

#[test]
fn a_descriptor_closed_and_reused_can_be_watched_again() {
    // A fixed high number, so that the threads of other tests (which open
    // descriptors too) cannot take it in between.
    const FD: i32 = 900;
    let mut poller = Poller::new().unwrap();
    let mut registry = IoRegistry::new(poller.registry().unwrap());
    let (_a, b) = UnixStream::pair().unwrap();
    // SAFETY: dup2 onto a number this test owns; b stays open meanwhile.
    assert_eq!(unsafe { libc::dup2(b.as_raw_fd(), FD) }, FD);
    drop(b);
    registry.insert(FD, Direction::Read, "old").unwrap();
    // Closed behind the registry's back: epoll forgets the descriptor.
    // SAFETY: FD is this test's own descriptor.
    assert_eq!(unsafe { libc::close(FD) }, 0);
    let (mut writer, reader) = UnixStream::pair().unwrap();
    // SAFETY: as above; the number is free again.
    assert_eq!(unsafe { libc::dup2(reader.as_raw_fd(), FD) }, FD);
    assert_eq!(
        registry.insert(FD, Direction::Read, "new").unwrap(),
        Some("old")
    );
    writer.write_all(b"x").unwrap();
    poller.poll(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(ready_fds(&poller), vec![(FD, true, false)]);
    registry.remove(FD, Direction::Read);
    // SAFETY: as above.
    unsafe { libc::close(FD) };
}

/// Linux's "bad file descriptor".
const EBADF: i32 = 9;

#[test]
fn forgetting_all_watchers_leaves_the_epoll_set_alone() {
    // A forked child drops its copy of the registry this way: the epoll set
    // is shared with the parent, which keeps receiving events.
    let mut poller = Poller::new().unwrap();
    let mut registry = IoRegistry::new(poller.registry().unwrap());
    let (mut a, b) = UnixStream::pair().unwrap();
    let fd = b.as_raw_fd();
    registry.insert(fd, Direction::Read, "reader").unwrap();
    let mut forgotten = registry.forget_all();
    forgotten.sort();
    assert_eq!(forgotten, vec!["reader"]);
    assert!(registry.is_empty());
    a.write_all(b"still watched").unwrap();
    poller.poll(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(ready_fds(&poller), vec![(fd, true, false)]);
}
