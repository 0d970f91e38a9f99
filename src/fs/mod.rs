//! Filesystems the agent reads and writes itself, without mtools, mkfs or
//! a mount: FAT12/16/32 (EFI system partitions, FAT configdrives) and
//! ISO 9660 (configdrives as Ironic builds them); and [`blkid`], which
//! names the filesystem on a partition (type, UUID, label) as blkid does.

pub mod blkid;
pub mod fat;
pub mod iso9660;
