//! `controller-fw`: the inspection controller as a Cortex-M4F (thumbv7em-none-eabihf) firmware
//! image, without cortex-m-rt: the vector table and the reset handler are the few lines of
//! assembly below, the memory map is `firmware.ld` (an STM32F4-class part: 512 KiB flash at
//! 0x0800_0000, 128 KiB RAM at 0x2000_0000).
//!
//! The `board` module stands in for a HAL: its SPI device, data-ready input and reject output
//! implement the embedded-hal 1.0 traits over values the optimizer cannot see through
//! (`core::hint::black_box`), so the image contains the whole inspection path — which is what
//! it is for: measuring code size and checking that everything links for the target
//! (`targets/controller/size.sh`). On a real board, replace `board` with your HAL's types.
//!
//! With the feature `selftest`, `main` instead runs the deterministic self-test sequence
//! (`temper_controller::selftest`) and prints its transcript through ARM semihosting, then exits
//! the emulator: `run_firmware_qemu.sh` boots it on QEMU's `netduinoplus2` (an STM32F405, same
//! memory map) and compares the transcript with the host's.
//!
//! Build: `cargo build -p temper-controller --features firmware --bin controller-fw
//! --target thumbv7em-none-eabihf [--release]` (`--features selftest` for the self-test).
#![no_std]
#![no_main]

#[cfg(not(target_os = "none"))]
compile_error!("controller-fw is firmware: build it with --target thumbv7em-none-eabihf");

#[cfg(not(feature = "selftest"))]
use temper_controller::{defect_class, Controller, SpiSensor, Trigger};
use temper_controller::{ARENA_SIZE, FRAME_LEN};

/// Simulated peripherals (replace with a HAL).
#[cfg(not(feature = "selftest"))]
mod board {
    use core::convert::Infallible;
    use core::hint::black_box;
    use embedded_hal::digital::{ErrorType as PinErrorType, InputPin, OutputPin};
    use embedded_hal::spi::{ErrorType as SpiErrorType, Operation, SpiDevice};

    /// The sensor's SPI device.
    pub struct Spi;
    impl SpiErrorType for Spi {
        type Error = Infallible;
    }
    impl SpiDevice<u8> for Spi {
        fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), Infallible> {
            for op in operations {
                match op {
                    Operation::Read(buf) | Operation::TransferInPlace(buf) | Operation::Transfer(buf, _) => {
                        for (i, b) in buf.iter_mut().enumerate() {
                            *b = black_box(i as u8);
                        }
                    }
                    Operation::Write(bytes) => {
                        black_box(bytes);
                    }
                    Operation::DelayNs(ns) => {
                        black_box(*ns);
                    }
                }
            }
            Ok(())
        }
    }

    /// The data-ready input.
    pub struct Ready;
    impl PinErrorType for Ready {
        type Error = Infallible;
    }
    impl InputPin for Ready {
        fn is_high(&mut self) -> Result<bool, Infallible> {
            Ok(black_box(true))
        }
        fn is_low(&mut self) -> Result<bool, Infallible> {
            Ok(black_box(false))
        }
    }

    /// The reject output.
    pub struct Reject;
    impl PinErrorType for Reject {
        type Error = Infallible;
    }
    impl OutputPin for Reject {
        fn set_low(&mut self) -> Result<(), Infallible> {
            black_box(false);
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Infallible> {
            black_box(true);
            Ok(())
        }
    }
}

/// Stop here (a real firmware would signal the fault, e.g. blink a LED, and wait for a reset).
fn halt() -> ! {
    loop {
        core::hint::spin_loop();
    }
}

/// Entry point, called by `Reset` once RAM is initialized. The arena and the frame buffer are
/// locals of this never-returning function: fixed-size, on the stack (`firmware.ld` gives the
/// stack all RAM above `.data`/`.bss`), exclusively borrowed by the controller for ever.
#[cfg(not(feature = "selftest"))]
extern "C" fn main() -> ! {
    let Ok(model) = temper_controller::model() else { halt() };
    let mut arena = [0u8; ARENA_SIZE];
    let mut frame = [0u8; FRAME_LEN];
    let class = defect_class(&model, "defect").unwrap_or(1);
    let sensor = SpiSensor::new(board::Spi, board::Ready, Trigger::Level);
    let Ok(mut controller) = Controller::new(&model, &mut arena, &mut frame, sensor, board::Reject, class) else { halt() };
    loop {
        // Errors are per frame; a real controller would count them and alarm on a streak.
        let _ = core::hint::black_box(controller.poll());
        core::hint::black_box(controller.stats());
    }
}

/// Self-test entry point (feature `selftest`): run [`temper_controller::selftest`] on the
/// embedded model, print the transcript through semihosting and exit the emulator with its
/// outcome.
#[cfg(feature = "selftest")]
extern "C" fn main() -> ! {
    use core::fmt::Write as _;
    stack::paint();
    let mut console = semihosting::Console::new();
    let _ = writeln!(console, "controller-fw selftest, arena {ARENA_SIZE} bytes, frame {FRAME_LEN} bytes");
    let ok = match temper_controller::model() {
        Ok(model) => {
            let mut arena = [0u8; ARENA_SIZE];
            let mut frame = [0u8; FRAME_LEN];
            temper_controller::selftest::run(&model, &mut arena, &mut frame, &mut console) == Ok(true)
        }
        Err(e) => {
            let _ = writeln!(console, "model: {e}");
            false
        }
    };
    let _ = writeln!(console, "controller-fw stack peak {} bytes (arena and frame included)", stack::peak());
    console.flush();
    semihosting::exit(ok)
}

/// Stack high-water mark of the self-test: the free RAM below the stack pointer is painted
/// with a pattern on entry to `main`; the lowest word no longer holding it is the peak.
#[cfg(feature = "selftest")]
mod stack {
    // Two leaf functions in assembly: they touch only RAM between the end of `.bss` and the
    // stack pointer (minus a 64-byte margin), which no Rust object occupies while `main` runs
    // (single-threaded, no interrupts enabled).
    core::arch::global_asm!(
        ".section .text.temper_fw_stack, \"ax\", %progbits",
        ".syntax unified",
        ".thumb",
        ".global temper_fw_stack_paint",
        ".type temper_fw_stack_paint, %function",
        ".thumb_func",
        "temper_fw_stack_paint:",
        "    ldr r0, =__ebss",
        "    mov r1, sp",
        "    sub r1, r1, #64",
        "    ldr r2, =0x5A5A5A5A",
        "1:  cmp r0, r1",
        "    bhs 2f",
        "    str r2, [r0], #4",
        "    b 1b",
        "2:  bx lr",
        ".ltorg",
        ".global temper_fw_stack_peak",
        ".type temper_fw_stack_peak, %function",
        ".thumb_func",
        "temper_fw_stack_peak:",
        "    ldr r0, =__ebss",
        "    ldr r2, =0x5A5A5A5A",
        "3:  ldr r1, [r0]",
        "    cmp r1, r2",
        "    bne 4f",
        "    add r0, r0, #4",
        "    b 3b",
        "4:  ldr r1, =_stack_top",
        "    sub r0, r1, r0",
        "    bx lr",
        ".ltorg",
    );

    // SAFETY: both functions follow the AAPCS (arguments none, result in r0, only r0-r2
    // clobbered) and access only the unused RAM described above, so calling them from Rust at
    // any time is sound.
    unsafe extern "C" {
        safe fn temper_fw_stack_paint();
        safe fn temper_fw_stack_peak() -> u32;
    }

    /// Paint the free stack.
    pub fn paint() {
        temper_fw_stack_paint();
    }

    /// Bytes of stack used since [`paint`], measured from the top of RAM.
    pub fn peak() -> u32 {
        temper_fw_stack_peak()
    }
}

/// ARM semihosting (for the self-test under QEMU `-semihosting`; on a board without a
/// debugger attached, `bkpt` faults).
#[cfg(feature = "selftest")]
mod semihosting {
    const SYS_WRITE0: u32 = 0x04;
    const SYS_EXIT: u32 = 0x18;
    const ADP_STOPPED_APPLICATION_EXIT: usize = 0x2_0026;
    const ADP_STOPPED_RUNTIME_ERROR: usize = 0x2_0023;

    /// A semihosting call: operation `op`, parameter block or value `arg`.
    fn call(op: u32, arg: usize) -> u32 {
        let ret: u32;
        // SAFETY: `bkpt 0xAB` is the semihosting trap: the debugger or emulator performs `op`,
        // reading only memory `arg` points to (a live, NUL-terminated buffer for SYS_WRITE0; a
        // plain value for SYS_EXIT), and returns its result in r0. No other state changes.
        unsafe { core::arch::asm!("bkpt #0xab", inout("r0") op => ret, in("r1") arg, options(nostack, preserves_flags)) };
        ret
    }

    /// Line-buffered text output on the host's console.
    pub struct Console {
        buf: [u8; 160],
        len: usize,
    }

    impl Console {
        pub fn new() -> Console {
            Console { buf: [0; 160], len: 0 }
        }

        /// Write out what is buffered.
        pub fn flush(&mut self) {
            if self.len > 0 {
                self.buf[self.len] = 0;
                call(SYS_WRITE0, self.buf.as_ptr() as usize);
                self.len = 0;
            }
        }
    }

    impl core::fmt::Write for Console {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for &b in s.as_bytes() {
                if self.len == self.buf.len() - 1 {
                    self.flush();
                }
                self.buf[self.len] = if b == 0 { b'?' } else { b };
                self.len += 1;
                if b == b'\n' {
                    self.flush();
                }
            }
            Ok(())
        }
    }

    /// End the emulation: exit status 0 when `ok`, 1 otherwise.
    pub fn exit(ok: bool) -> ! {
        call(SYS_EXIT, if ok { ADP_STOPPED_APPLICATION_EXIT } else { ADP_STOPPED_RUNTIME_ERROR });
        super::halt()
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    #[cfg(feature = "selftest")]
    {
        use core::fmt::Write as _;
        let mut console = semihosting::Console::new();
        let _ = writeln!(console, "panic: {_info}");
        console.flush();
        semihosting::exit(false)
    }
    #[cfg(not(feature = "selftest"))]
    halt()
}

// Vector table (initial stack pointer, reset, NMI, HardFault, MemManage, BusFault, UsageFault)
// and the reset handler: zero `.bss`, copy `.data` from flash, enable the FPU (CP10/CP11 full
// access, needed before any hard-float code runs), then call `main`. The symbols come from
// `firmware.ld`. This is what cortex-m-rt's `Reset` does; it runs before any Rust code, so it
// is the one place of this firmware that touches memory outside Rust's model.
core::arch::global_asm!(
    ".section .vector_table, \"a\", %progbits",
    ".global __vector_table",
    "__vector_table:",
    "    .word _stack_top",
    "    .word Reset",
    "    .word DefaultHandler",
    "    .word DefaultHandler",
    "    .word DefaultHandler",
    "    .word DefaultHandler",
    "    .word DefaultHandler",
    "",
    ".section .text.Reset, \"ax\", %progbits",
    ".syntax unified",
    ".thumb",
    ".global Reset",
    ".type Reset, %function",
    ".thumb_func",
    "Reset:",
    "    ldr r0, =__sbss",
    "    ldr r1, =__ebss",
    "    movs r2, #0",
    "1:  cmp r0, r1",
    "    bhs 2f",
    "    str r2, [r0], #4",
    "    b 1b",
    "2:  ldr r0, =__sdata",
    "    ldr r1, =__edata",
    "    ldr r2, =__sidata",
    "3:  cmp r0, r1",
    "    bhs 4f",
    "    ldr r3, [r2], #4",
    "    str r3, [r0], #4",
    "    b 3b",
    "4:  ldr r0, =0xE000ED88",
    "    ldr r1, [r0]",
    "    orr r1, r1, #(0xF << 20)",
    "    str r1, [r0]",
    "    dsb",
    "    isb",
    "    bl {main}",
    "    b .",
    ".ltorg",
    ".size Reset, . - Reset",
    "",
    ".type DefaultHandler, %function",
    ".thumb_func",
    "DefaultHandler:",
    "    b .",
    ".size DefaultHandler, . - DefaultHandler",
    main = sym main,
);
